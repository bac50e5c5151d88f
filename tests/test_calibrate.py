"""`calibrate`: a finished LSTM run exported again, with a new recipe or calibration, without training."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_dance import cli, savedmodels, sequence_training

TINY = dict(model="lstm", head="mdn", mixtures=2, units=8, num_layers=1, batch_size=2, seq_length=10, epochs=2,
            learning_rate=1e-2, jit_compile=False, train_frac=0.9, seed=3)


def _walk(frames, dim=3, seed=0):
    return (np.cumsum(np.random.default_rng(seed).standard_normal((frames, dim)), 0) * 0.1).astype(np.float32)


@pytest.fixture(scope="session")  # session: the slow test that uses it runs after the other files
def run(tmp_path_factory):
    """(workdir, export root, latents path, first export) of a tiny trained mixture-head run."""
    root = tmp_path_factory.mktemp("calibrate")
    latents = str(root / "z.npy")
    np.save(latents, _walk(300))
    result = sequence_training.train_and_evaluate(latents, str(root / "run"), str(root / "saved"), **TINY)
    return str(root / "run"), str(root / "saved"), latents, result["export_dir"]


def _untouched(workdir):
    """What training writes in the run: the export step must leave all of it as it was."""
    names = ("history.json", "config.json", "model.keras", "best_weights.npz", "trained.json")
    return {n: os.path.getmtime(os.path.join(workdir, n)) for n in names} | {
        "checkpoints": sorted(os.listdir(os.path.join(workdir, "checkpoints")))}


@pytest.mark.slow
def test_calibrate_exports_a_new_loadable_version_with_the_new_calibration_and_does_not_train(run, run_module):
    workdir, saved, _, first = run
    before = _untouched(workdir)
    result = run_module("tf_dance.calibrate", f"--workdir={workdir}", f"--export_dir={saved}", "--calibrate_frames=120",
                        "--calibrate_smoothing=0.0,0.9", "--calibrate_fps=24", "--rollout_noise=0.2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Epoch" not in result.stdout and "Calibrating the rollout recipe" in result.stdout
    new = os.path.join(saved, "dance_lstm", "2")
    assert f"Done: {new}" in result.stdout and _untouched(workdir) == before
    info, old = savedmodels.record(new), savedmodels.record(first)
    cal = info["calibration"]
    assert [c["recipe"]["smoothing"] for c in cal["candidates"]] == [0.0, 0.9] and "calibration" not in old
    assert info["rollout"]["smoothing"] == cal["candidates"][cal["chosen"]]["recipe"]["smoothing"]
    assert info["rollout"]["noise"] == 0.2 and info["config"]["rollout_noise"] == 0.2
    for key in ("best_epoch", "best_val_loss", "trained_epochs", "latents", "normalization"):
        assert info[key] == old[key], key
    assert {k: v for k, v in info["config"].items() if k not in sequence_training.EXPORT_SETTINGS} == {
        k: v for k, v in old["config"].items() if k not in sequence_training.EXPORT_SETTINGS}
    a, b = tf.saved_model.load(first), tf.saved_model.load(new)  # plain TensorFlow, the same trained weights
    weights = [[v.numpy() for v in m.tf_variables if "seed_generator" not in v.name] for m in (a, b)]
    assert len(weights[0]) == len(weights[1]) > 2
    for x, y in zip(*weights):
        np.testing.assert_array_equal(x, y)
    frames = b.signatures["rollout"](seed=tf.constant(_walk(20)[None]), num_frames=tf.constant(30),
                                     temperature=tf.constant(1.0), noise=tf.constant(0.0),
                                     random_seed=tf.constant(0))["frames"]
    assert frames.shape == (1, 30, 3) and np.all(np.isfinite(frames.numpy()))


def test_calibrate_refuses_what_is_not_a_trained_run_in_one_line(run, run_module, fails_cleanly, tmp_path):
    workdir, _, _, _ = run
    out = str(tmp_path / "saved")
    fails_cleanly(run_module("tf_dance.calibrate", f"--workdir={tmp_path}", f"--export_dir={out}"),
                  f"{tmp_path} is not a trained LSTM run")
    with pytest.raises(cli.UserError, match="none is not a trained LSTM run"):
        sequence_training.export_run(str(tmp_path / "none"), out)
    with pytest.raises(cli.UserError, match=r"trained with other settings \(units: 8 -> 16\)"):
        sequence_training.export_run(workdir, out, units=16)
    assert not os.path.exists(out)


def test_export_run_changes_only_the_export_and_checks_its_latents(run, tmp_path):
    workdir, _, latents, first = run
    final = sequence_training.export_run(workdir, str(tmp_path), rollout_coherence=0.5, export_name="other")
    assert final == os.path.join(str(tmp_path), "other", "1")
    info = savedmodels.record(final)
    assert info["rollout"]["coherence"] == 0.5 and info["config"]["export_name"] == "other"
    assert info["best_epoch"] == savedmodels.record(first)["best_epoch"]
    assert savedmodels.SequenceModel(final).controls["coherence"] == 0.5
    other = str(tmp_path / "other.npy")
    np.save(other, _walk(300, seed=1))
    with pytest.raises(cli.UserError, match="other latents than the run .* trained on"):
        sequence_training.export_run(workdir, str(tmp_path), latents_path=other, calibrate_frames=60)
    with pytest.raises(cli.UserError, match="must be numbers in"):
        sequence_training.export_run(workdir, str(tmp_path), calibrate_frames=60, calibrate_smoothing=[0.5, 1.0])
    assert sorted(os.listdir(tmp_path / "other")) == ["1"]  # nothing exported by the refused ones
    with open(os.path.join(workdir, "trained.json")) as f:
        assert json.load(f)["latents_file"] == os.path.abspath(latents)
