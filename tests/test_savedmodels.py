"""savedmodels: finding versions, pairing an autoencoder's halves, damaged models, stale temporary exports."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tf_dance import cli, data, savedmodels

from conftest import TINY_DIM

DIM = TINY_DIM


@pytest.fixture(scope="session")  # shared with the slow tests, which run last
def root(tiny_saved_models):
    """saved_models with an untrained tiny encoder/1 and decoder/1 from one training, and an LSTM."""
    return tiny_saved_models


def _copy_version(src, root, name, training_id=None):
    """A copy of the version `src` as `root/name`, optionally claiming another training."""
    dst = os.path.join(root, name)
    shutil.copytree(src, dst)
    if training_id:
        with open(os.path.join(dst, savedmodels.METADATA), "w") as f:
            json.dump({"training_id": training_id}, f)
    return dst


def test_zero_padded_version_folders_are_read_as_numbers(root, tmp_path):
    models = str(tmp_path / "decoder")
    _copy_version(os.path.join(root, "decoder", "1"), models, "1")
    padded = _copy_version(os.path.join(root, "decoder", "1"), models, "007")
    os.makedirs(os.path.join(models, "12"))  # unfinished: skipped
    assert savedmodels.versions(models) == [1, 7]
    assert savedmodels.resolve(models, "decoder") == padded
    assert savedmodels.decode_latents(models, np.zeros((2, DIM))).shape == (2, 54, 96, 1)
    assert cli.export_version(str(tmp_path), "decoder", lambda d: open(os.path.join(d, "x"), "w").close()) \
        == os.path.join(models, "13")  # one past every numbered folder, finished or not
    _copy_version(os.path.join(root, "decoder", "1"), models, "7")
    with pytest.raises(cli.UserError, match=r"two folders for version 7 \((007, 7|7, 007)\)"):
        savedmodels.resolve(models, "decoder")


@pytest.mark.slow
def test_a_kill_between_the_two_exports_never_pairs_two_trainings(root, tmp_path, run_module, fails_cleanly):
    """A training killed after exporting encoder/2 and before its decoder: readers keep using the complete
    pair of the training before, and a pinned half-pair is refused."""
    models = str(tmp_path / "models")
    shutil.copytree(root, models)
    old_encoder, decoder = os.path.join(models, "encoder", "1"), os.path.join(models, "decoder", "1")
    killed = _copy_version(old_encoder, os.path.join(models, "encoder"), "2", training_id="killed-run")
    assert savedmodels.resolve(models, "encoder", "encoder") == killed  # the newest encoder alone...
    assert savedmodels.resolve_pair(models, models) == (old_encoder, decoder)  # ...is not what a pair uses
    assert savedmodels.load_models(models, need_encoder=True).encoder.path == os.path.abspath(old_encoder)
    with pytest.raises(cli.UserError, match="different trainings"):
        savedmodels.resolve_pair(killed, models)
    with pytest.raises(cli.UserError, match="different trainings"):
        savedmodels.resolve_pair(killed, decoder)
    # the killed training rerun: its new pair wins
    _copy_version(old_encoder, os.path.join(models, "encoder"), "3", training_id="rerun")
    new_decoder = _copy_version(decoder, os.path.join(models, "decoder"), "2", training_id="rerun")
    assert savedmodels.resolve_pair(models, models) == (os.path.join(models, "encoder", "3"), new_decoder)

    data = str(tmp_path / "dancer.npz")
    np.savez(data, frames=np.zeros((20, 54, 96, 1), np.uint8), fps=np.float32(24))
    result = run_module("tf_dance.generate", f"--model_dir={models}", f"--encoder={killed}", f"--data={data}",
                        "--frames=5", "--seed_frames=4", f"--out={tmp_path}/out/dance.mp4")
    fails_cleanly(result, "different trainings")
    assert not os.path.exists(tmp_path / "out" / "dance.mp4")


def _truncate_data(d):
    (shard,) = [n for n in os.listdir(os.path.join(d, "variables")) if n.startswith("variables.data")]
    path = os.path.join(d, "variables", shard)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _empty_index(d):
    open(os.path.join(d, "variables", "variables.index"), "w").close()


def _no_variables(d):
    shutil.rmtree(os.path.join(d, "variables"))


def _garbage_graph(d):
    with open(os.path.join(d, "saved_model.pb"), "wb") as f:
        f.write(b"\x08\x96\x01not a protobuf at all" * 10)


def _garbage_record(d):
    with open(os.path.join(d, savedmodels.METADATA), "w") as f:
        f.write("{not json")


@pytest.mark.parametrize("damage", [_truncate_data, _empty_index, _no_variables, _garbage_graph, _garbage_record])
def test_a_damaged_model_is_one_error_naming_its_directory(root, tmp_path, damage):
    broken = _copy_version(os.path.join(root, "decoder", "1"), str(tmp_path / "decoder"), "3")
    damage(broken)
    with pytest.raises(cli.UserError) as error:
        savedmodels.decode_latents(str(tmp_path / "decoder"), np.zeros((2, DIM)))
    message = str(error.value)
    assert os.path.abspath(broken) in message and "damaged" in message and "\n" not in message, message


def test_a_damaged_model_fails_the_script_cleanly(root, tmp_path, run_module, fails_cleanly):
    broken = _copy_version(os.path.join(root, "decoder", "1"), str(tmp_path / "decoder"), "1")
    _truncate_data(broken)
    np.save(tmp_path / "latents.npy", np.zeros((30, DIM), np.float32))
    result = run_module("tf_dance.generate", f"--lstm={root}", f"--decoder={broken}",
                        f"--latents={tmp_path}/latents.npy", "--frames=5", "--seed_frames=4",
                        f"--out={tmp_path}/dance.mp4")
    fails_cleanly(result, broken)


def test_stale_temporary_exports_are_removed_but_not_one_in_use(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    root = tmp_path / "encoder"
    for name in (f".tmp-export-{int(gone.stdout)}-x1", f".tmp-export-{os.getpid()}-x2", ".tmp-export-oldstyle",
                 ".tmp-export-fresh"):
        os.makedirs(root / name / "variables")
    old = time.time() - 2 * cli.STALE_SECONDS
    os.utime(root / ".tmp-export-oldstyle", (old, old))
    cli.export_version(str(tmp_path), "encoder", lambda d: open(os.path.join(d, "saved_model.pb"), "w").close())
    assert sorted(os.listdir(root)) == [f".tmp-export-{os.getpid()}-x2", ".tmp-export-fresh", "1"]


def _record(version, **changes):
    """Rewrites fields of a version's tf_dance.json (None removes the field)."""
    path = os.path.join(version, savedmodels.METADATA)
    with open(path) as f:
        info = json.load(f)
    info.update(changes)
    info = {k: v for k, v in info.items() if v is not None}
    with open(path, "w") as f:
        json.dump(info, f)
    return version


@pytest.fixture
def retrained(root, tmp_path):
    """saved_models whose autoencoder was retrained (encoder/2, decoder/2 of training "retrain") after the LSTM
    learnt the latents of encoder/1 (dance_lstm/1 records that training): (models, lstm, first training)."""
    models = str(tmp_path / "models")
    shutil.copytree(root, models)
    first = savedmodels.training_id(os.path.join(models, "decoder", "1"))
    for name in ("encoder", "decoder"):
        _copy_version(os.path.join(models, name, "1"), os.path.join(models, name), "2", training_id="retrain")
    lstm = _record(os.path.join(models, "dance_lstm", "1"), autoencoder={"training_id": first})
    return models, lstm, first


def test_an_lstm_is_served_with_the_autoencoder_it_learnt_from(retrained):
    models, lstm, first = retrained
    picked = savedmodels.load_models(models, need_encoder=True)
    assert picked.decoder.path == os.path.abspath(os.path.join(models, "decoder", "1"))  # not the newest, 2
    assert picked.encoder.path == os.path.abspath(os.path.join(models, "encoder", "1"))
    for decoder in (os.path.join(models, "decoder", "2"), models):  # pinned, or a root whose newest is another
        with pytest.raises(cli.UserError) as error:
            savedmodels.load_models(models, decoder=decoder)
        message = str(error.value)
        assert first in message and "retrain" in message and "--allow_mismatch" in message, message
        assert f"--decoder={os.path.join(models, 'decoder', '1')}" in message, message
    with pytest.raises(cli.UserError, match="training retrain"):
        savedmodels.load_models(models, encoder=os.path.join(models, "encoder", "2"), need_encoder=True)
    forced = savedmodels.load_models(models, decoder=models, allow_mismatch=True)
    assert forced.decoder.path == os.path.abspath(os.path.join(models, "decoder", "2"))
    _record(lstm, autoencoder=None)  # an LSTM that records no training: the newest pair, as before
    savedmodels._sequence_model.cache_clear()
    assert savedmodels.load_models(models).decoder.path == os.path.abspath(os.path.join(models, "decoder", "2"))


def test_the_scripts_refuse_another_trainings_decoder_or_latents(retrained, tmp_path, run_module, fails_cleanly):
    models, lstm, first = retrained
    latents = str(tmp_path / "z.npy")
    z = np.random.default_rng(0).normal(size=(40, DIM)).astype(np.float32)
    np.save(latents, z)
    out = f"--out={tmp_path}/out/dance.mp4"
    result = run_module("tf_dance.generate", f"--lstm={lstm}", f"--decoder={models}/decoder/2", f"--latents={latents}",
                        "--frames=5", "--seed_frames=4", out)
    fails_cleanly(result, f"belongs to autoencoder training {first}, but decoder")
    assert "training retrain" in result.stderr and "--allow_mismatch" in result.stderr
    evaluate = ["tf_dance.evaluate", f"--model_dir={models}", f"--latents={latents}", f"--out_dir={tmp_path}/eval",
                "--frames=40", "--seed_frames=4"]
    fails_cleanly(run_module(*evaluate, f"--decoder={models}"), f"--decoder={models}/decoder/1")
    data.save_latent_source(latents, z, os.path.join(models, "encoder", "2"), "retrain")  # as encode writes it
    fails_cleanly(run_module("tf_dance.generate", f"--model_dir={models}", f"--latents={latents}", "--frames=5",
                             "--seed_frames=4", out), "was encoded by autoencoder training retrain")
    assert not os.path.exists(tmp_path / "out")
    fails_cleanly(run_module(*evaluate), "was encoded by autoencoder training retrain")
    fails_cleanly(run_module("tf_dance.evaluate", f"--generated={latents}", f"--decoder={models}/decoder/1",
                             f"--latents={latents}", f"--out_dir={tmp_path}/eval"),
                  f"comes from training {first}")
    assert not os.path.exists(tmp_path / "eval")
    os.remove(data.latent_source_path(latents))
    forced = run_module("tf_dance.generate", f"--lstm={lstm}", f"--decoder={models}/decoder/2",
                        f"--latents={latents}", "--frames=5", "--seed_frames=4", "--allow_mismatch", out)
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert f"decoding with {os.path.abspath(models)}/decoder/2" in forced.stdout


def test_a_version_folder_named_with_other_digits_is_not_a_version(root, tmp_path):
    models = str(tmp_path / "decoder")
    one = _copy_version(os.path.join(root, "decoder", "1"), models, "1")
    for name in ("\u0663", "\uff12", "7\n", "\u00b2"):  # Arabic-Indic 3, fullwidth 2, a trailing newline, superscript 2
        _copy_version(one, models, name)
    assert savedmodels.versions(models) == [1] and savedmodels.resolve(models, "decoder") == one
    assert cli.export_version(str(tmp_path), "decoder", lambda d: None) == os.path.join(models, "2")


def test_the_lstm_calibrates_with_the_decoder_of_its_latents_training(retrained):
    models, _, first = retrained
    source = {"training_id": first, "encoder": os.path.join(models, "encoder", "1")}
    with pytest.raises(cli.UserError, match=f"--calibrate_decoder={os.path.join(models, 'decoder', '1')}"):
        savedmodels.calibration_decoder(models, DIM, source)
    path = os.path.join(models, "decoder", "1")
    assert savedmodels.calibration_decoder(path, DIM, source).path == os.path.abspath(path)
    assert "allow_mismatch" not in str(pytest.raises(cli.UserError, savedmodels.calibration_decoder,
                                                     models, DIM, source).value)
    with pytest.raises(cli.UserError, match=f"takes {DIM}-d latents but these are {DIM + 1}-d"):
        savedmodels.calibration_decoder(path, DIM + 1, source)
