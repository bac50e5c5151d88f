"""`autoencoder_training` and its script: the autoencoder actually learns (so a silent regression in the loss,
the batches or the optimizer fails a test instead of only lowering a number nobody reads); training, resume,
export, encode/decode of the trained run, bad inputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

# Must equal flags/tiny_autoencoder.flags (checked below), so in-process and CLI runs compare.
TINY = dict(steps=20, batch_size=16, learning_rates=[3e-3], lr_boundaries=[], filters=[4, 4, 8, 8],
            latent_dim=128, val_fraction=0.1, checkpoint_every=10, eval_pairs=50, precision="float32")
# flags/tiny_autoencoder.flags, but 8 filters at every level (with 4 at full resolution, seeds 2 and 3
# stayed at IoU 0 even after 1,000 steps) and 300 steps in one epoch.
LEARN = dict(steps=300, batch_size=16, learning_rates=[3e-3], lr_boundaries=[], filters=[8, 8, 8, 8],
             latent_dim=128, val_fraction=0.1, checkpoint_every=300, eval_pairs=50, precision="float32",
             seed=0)


def test_a_few_hundred_steps_beat_the_untrained_model(tiny_dataset, tiny_dancer, tmp_path):
    """Held-out IoU after 300 steps against the same model at its initial weights (measured: 0.72
    vs 0.05) and against the best cut of the mean training frame (0.28), which a decoder that
    ignored its latent could at most reach."""
    import keras

    from tf_dance import autoencoder, autoencoder_training

    frames = tiny_dancer["frames"]
    config = autoencoder_training.check_config(LEARN)
    train, held = autoencoder_training.split(len(frames), config["val_fraction"], config["seed"])
    keras.utils.set_random_seed(config["seed"])  # as training starts: the very weights it starts from
    encoder, decoder, _ = autoencoder_training.build(frames.shape[1:], config)
    untrained = autoencoder_training.evaluate(encoder, decoder, frames[held], pairs=config["eval_pairs"])

    result = autoencoder_training.train_and_evaluate(tiny_dataset, str(tmp_path / "work"), str(tmp_path / "models"),
                                                     verbose=0, **LEARN)
    trained = result["metrics"]
    assert trained["steps"] == LEARN["steps"] and trained["held_out"] and trained["eval_frames"] == len(held)
    assert trained["iou"] >= untrained["iou"] + 0.4, (trained["iou"], untrained["iou"])
    assert trained["mse"] < untrained["mse"] / 4, (trained["mse"], untrained["mse"])

    x = frames[held] / 255.0
    mean = frames[train].mean(axis=0) / 255.0
    best_mean = max(np.mean(autoencoder.frame_iou(x >= 0.5, np.broadcast_to(mean >= cut, x.shape)))
                    for cut in (0.1, 0.2, 0.3, 0.5))
    assert trained["iou"] >= best_mean + 0.2, (trained["iou"], best_mean)


def _cli(*args, **popen):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "tf_dance.train_autoencoder", f"--flagfile={ROOT}/flags/tiny_autoencoder.flags",
               *args]
    if popen:
        return subprocess.Popen(command, cwd=ROOT, env=env, **popen)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _clean(result):
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")  # shared with the slow tests, which run last
def trained(tiny_dataset, tmp_path_factory):
    """One uninterrupted tiny run, in-process: (result dict, workdir, export_dir)."""
    from tf_dance import autoencoder_training
    base = tmp_path_factory.mktemp("ae")
    result = autoencoder_training.train_and_evaluate(tiny_dataset, str(base / "work"), str(base / "models"),
                                                  verbose=0, **TINY)
    return result, str(base / "work"), str(base / "models")


def test_train_evaluate_export(trained):
    result, work, models = trained
    m = result["metrics"]
    assert m["steps"] == TINY["steps"] and m["held_out"] and m["eval_frames"] == 24
    for key in ("iou", "iou_pooled", "mse", "spearman_pixel_vs_latent"):
        assert np.isfinite(m[key])
    assert 0 <= m["iou"] <= 1 and 0 <= m["mse"] <= 1 and -1 <= m["spearman_pixel_vs_latent"] <= 1
    assert result["encoder_dir"] == os.path.join(models, "encoder", "1")
    assert result["decoder_dir"] == os.path.join(models, "decoder", "1")
    for name in ("eval.json", "reconstructions.png", "encoder.keras", "decoder.keras", "config.json",
                 "checkpoints/checkpoint", "checkpoints/ckpt-20.index"):
        assert os.path.isfile(os.path.join(work, name)), name
    with open(os.path.join(work, "eval.json")) as f:
        assert json.load(f)["metrics"]["steps"] == TINY["steps"]
    import tensorflow as tf
    logs = os.path.join(work, "tensorboard")
    events = [os.path.join(logs, n) for n in os.listdir(logs) if n.startswith("events.out.tfevents")]
    tags = {}
    for record in tf.data.TFRecordDataset(events):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            tags.setdefault(value.tag, []).append((event.step, value))
    assert [s for s, _ in tags["loss"]] == [10, 20] and "learning_rate" in tags and "val_iou" in tags
    step, image = tags["held_out/original_over_reconstruction"][-1]
    assert step == 20 and image.metadata.plugin_data.plugin_name == "images"
    width, height, *pngs = tf.make_ndarray(image.tensor)
    assert (int(width), int(height)) == (96, 2 * 54) and len(pngs) == 8
    assert tf.io.decode_png(pngs[0]).shape == (108, 96, 1)


def test_reload_without_tf_dance_matches(trained, tiny_dancer, tmp_path):
    """Plain TensorFlow (no tf_dance on the path) runs both SavedModels like encode/decode do."""
    from tf_dance import savedmodels
    result, _, _ = trained
    frames = tiny_dancer["frames"][:37]
    np.save(tmp_path / "frames.npy", frames)
    script = f"""
import sys, numpy as np, tensorflow as tf
enc = tf.saved_model.load({result['encoder_dir']!r}).signatures["serving_default"]
dec = tf.saved_model.load({result['decoder_dir']!r}).signatures["serving_default"]
assert list(enc.structured_input_signature[1]) == ["frames"] and list(enc.structured_outputs) == ["latent"]
assert list(dec.structured_input_signature[1]) == ["latent"] and list(dec.structured_outputs) == ["frames"]
x = np.load("frames.npy").astype(np.float32) / 255.0
z = enc(frames=tf.constant(x))["latent"].numpy()
np.save("latent.npy", z)
np.save("decoded.npy", dec(latent=tf.constant(z))["frames"].numpy())
assert "tf_dance" not in sys.modules
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    _clean(subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)).check_returncode()
    z = savedmodels.encode_frames(result["encoder_dir"], frames, batch_size=16)
    assert z.shape == (37, 128) and z.dtype == np.float32
    np.testing.assert_allclose(z, np.load(tmp_path / "latent.npy"), rtol=1e-4, atol=1e-5)
    decoded = savedmodels.decode_latents(result["decoder_dir"], z, batch_size=10)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    expected = np.round(np.load(tmp_path / "decoded.npy") * 255)
    assert np.abs(decoded.astype(int) - expected).max() <= 1


def test_saved_model_cli_runs_the_decoder(trained, tmp_path):
    """The exported decoder runs with TensorFlow's own `saved_model_cli run`, as decode_latents does."""
    from tf_dance import savedmodels
    result, _, _ = trained
    z = np.random.default_rng(3).normal(size=(5, 128)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    r = _clean(subprocess.run(
        ["saved_model_cli", "run", f"--dir={result['decoder_dir']}", "--tag_set=serve",
         "--signature_def=serving_default", f"--inputs=latent={tmp_path / 'z.npy'}",
         f"--outdir={tmp_path / 'out'}"], env=env, capture_output=True, text=True, timeout=120))
    assert r.returncode == 0, r.stderr[-2000:]
    frames = np.load(tmp_path / "out" / "frames.npy")
    assert frames.shape == (5, 54, 96, 1) and frames.dtype == np.float32
    decoded = savedmodels.decode_latents(result["decoder_dir"], z)
    assert np.abs(np.round(frames * 255) - decoded).max() <= 1


@pytest.mark.slow
def test_resume_after_kill_matches_unbroken_run(trained, tiny_dataset, tmp_path, kill_at_first_checkpoint):
    """SIGKILLed from outside after its first checkpoint, restarted with the same flags: it resumes
    there, stops at exactly --steps, exports once, and its weights equal an unbroken run's."""
    import keras
    import tensorflow as tf
    from tf_dance import autoencoder, autoencoder_training  # noqa: F401 (registers the custom layer for loading)
    work, models = tmp_path / "work", str(tmp_path / "models")
    args = [f"--data={tiny_dataset}", f"--workdir={work}", f"--export_dir={models}"]
    killed = _cli(*args, "--steps=100000", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_at_first_checkpoint(killed, work)
    assert not os.path.exists(models)  # a killed run exports nothing
    done = int(tf.train.latest_checkpoint(str(work / "checkpoints")).rsplit("-", 1)[1])
    assert done % TINY["checkpoint_every"] == 0
    target = done + TINY["checkpoint_every"]
    second = _cli(*args, f"--steps={target}")
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"Resuming {work} at step {done} of {target}" in second.stdout
    # Output to a pipe: plain lines over the whole run (not per checkpoint chunk), each with the time left.
    assert not any(c in second.stdout for c in "\r\b\x1b")
    lines = [line for line in second.stdout.splitlines() if " steps (" in line]
    assert lines[0].startswith(f"{done + 1}/{target} steps (") and "elapsed, ~" in lines[0] and "left" in lines[0]
    assert lines[-1].startswith(f"{target}/{target} steps (100%)")
    assert f"step {target}: held-out loss " in second.stdout
    assert f"TensorBoard logs: tensorboard --logdir {work}/tensorboard" in second.stdout
    with open(work / "eval.json") as f:
        assert json.load(f)["metrics"]["steps"] == target
    assert os.listdir(os.path.join(models, "encoder")) == ["1"]
    if target == TINY["steps"]:
        _, unbroken, _ = trained
    else:
        unbroken = str(tmp_path / "straight")
        autoencoder_training.train_and_evaluate(tiny_dataset, unbroken, str(tmp_path / "models2"), verbose=0,
                                                **{**TINY, "steps": target})
    for name in ("encoder", "decoder"):
        a = keras.models.load_model(work / f"{name}.keras").get_weights()
        b = keras.models.load_model(os.path.join(unbroken, f"{name}.keras")).get_weights()
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_flagfiles_parse():
    from tf_dance import autoencoder_training
    for name in ("paper", "quick", "tiny"):
        config = autoencoder_training.check_config(
            autoencoder_training.flagfile_settings(f"{ROOT}/flags/{name}_autoencoder.flags"))
        if name == "paper":
            assert config["batch_size"] == 200 and config["steps"] == 150_000
            assert config["learning_rates"] == [1e-3, 1e-4] and config["lr_boundaries"] == [10_000]
            assert config["filters"][-1] == 32 and config["latent_dim"] == 128
        if name == "tiny":
            assert {k: config[k] for k in TINY} == TINY


def test_encode_cli(trained, tiny_dataset, tiny_dancer, tmp_path, run_module):
    from tf_dance import savedmodels
    result, _, models = trained
    out = str(tmp_path / "latents.npy")
    r = _clean(run_module("tf_dance.encode", f"--data={tiny_dataset}", f"--encoder={models}/encoder",
                          f"--out={out}", "--batch_size=100", "--noprogress"))
    assert r.returncode == 0, r.stderr[-2000:]
    z = np.load(out)
    assert z.shape == (240, 128) and z.dtype == np.float32
    np.testing.assert_allclose(z, savedmodels.encode_frames(result["encoder_dir"], tiny_dancer["frames"]),
                               rtol=1e-4, atol=1e-5)
    small = str(tmp_path / "small.npz")
    np.savez(small, frames=np.zeros((3, 48, 64, 1), np.uint8), fps=np.float32(24))
    r = _clean(run_module("tf_dance.encode", f"--data={small}", f"--encoder={models}/encoder",
                          f"--out={tmp_path}/bad.npy"))
    assert r.returncode != 0 and "expects 96x54x1" in r.stderr and not os.path.exists(tmp_path / "bad.npy")


def test_model_dir_errors(trained, tiny_dancer, tmp_path):
    from tf_dance import cli, savedmodels
    result, _, models = trained
    frames = tiny_dancer["frames"][:4]
    half = os.path.join(models, "encoder", "7")
    os.makedirs(os.path.join(half, "variables"))
    try:  # a half-written higher version is skipped when a root is given...
        z = savedmodels.encode_frames(os.path.join(models, "encoder"), frames)
        np.testing.assert_allclose(z, savedmodels.encode_frames(result["encoder_dir"], frames))
        with pytest.raises(cli.UserError, match="incomplete"):  # ...and refused when named
            savedmodels.encode_frames(half, frames)
    finally:
        os.rmdir(os.path.join(half, "variables"))
        os.rmdir(half)
    assert savedmodels.encode_frames(result["encoder_dir"], frames[:0]).shape == (0, 128)
    assert savedmodels.decode_latents(result["decoder_dir"], np.zeros((0, 128))).shape == (0, 54, 96, 1)
    with pytest.raises(cli.UserError, match="encoder directory not found"):
        savedmodels.encode_frames(str(tmp_path / "nothing"), frames)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(cli.UserError, match="no complete encoder"):
        savedmodels.encode_frames(str(tmp_path / "empty"), frames)
    with pytest.raises(cli.UserError, match="is not a SavedModel encoder"):
        savedmodels.encode_frames(result["decoder_dir"], frames)
    with pytest.raises(cli.UserError, match="expects 96x54x1"):
        savedmodels.encode_frames(result["encoder_dir"], np.zeros((2, 48, 64, 1), np.uint8))
    with pytest.raises(cli.UserError, match=r"\[N, 128\]"):
        savedmodels.decode_latents(result["decoder_dir"], np.zeros((2, 10), np.float32))
    with pytest.raises(cli.UserError, match="NaN"):
        savedmodels.decode_latents(result["decoder_dir"], np.full((2, 128), np.nan, np.float32))


def test_bad_config_and_changed_settings(trained, tiny_dataset):
    from tf_dance import autoencoder_training, cli
    _, work, models = trained
    for bad, match in ((dict(filters=[8, 8, 8]), "filters"), (dict(learning_rates=[1e-3, 1e-4]), "one more"),
                       (dict(batch_size=0), "batch_size"), (dict(loss="l1"), "loss"),
                       (dict(val_fraction=1.0), "val_fraction"), (dict(colour="red"), "unknown")):
        with pytest.raises(cli.UserError, match=match):
            autoencoder_training.train_and_evaluate(tiny_dataset, work, models, **{**TINY, **bad})
    with pytest.raises(cli.UserError, match="other settings.*filters"):
        autoencoder_training.train_and_evaluate(tiny_dataset, work, models, **{**TINY, "filters": [4, 4, 8, 16]})


def test_cli_errors(tmp_path, run_module):
    """Bad flags, an empty dataset and a frame-size mismatch: one message, exit != 0, nothing written."""
    empty = str(tmp_path / "empty.npz")
    np.savez(empty, frames=np.zeros((0, 54, 96, 1), np.uint8), fps=np.float32(24))
    small = str(tmp_path / "small.npz")
    np.savez(small, frames=np.zeros((3, 48, 64, 1), np.uint8), fps=np.float32(24))
    models = str(tmp_path / "models")
    cases = [
        ("tf_dance.train_autoencoder", [f"--data={small}", "--batch_size=0"], "batch_size"),
        ("tf_dance.train_autoencoder", [f"--data={small}", "--filters=8,8"], "filters"),
        ("tf_dance.train_autoencoder", [f"--data={empty}", f"--workdir={tmp_path}/w", f"--export_dir={models}"],
         "no frames"),
        ("tf_dance.encode", [f"--data={small}", f"--encoder={tmp_path}/none", f"--out={tmp_path}/z.npy"],
         "encoder directory not found"),
    ]
    for module, args, message in cases:
        r = _clean(run_module(module, *args))
        assert r.returncode != 0 and message in r.stderr, (module, args, r.stderr[-2000:])
        if message == "no frames":  # no flagfile: what is about to run, for how long, and the quick flagfile
            assert r.stdout.startswith("No --flagfile: the paper's settings (those not given as flags): 150,000 "
                                       "steps of 200 frames, filters 32,32,32,32"), r.stdout
            assert "Estimated roughly " in r.stdout and "--flagfile=flags/quick_autoencoder.flags" in r.stdout
    assert not os.path.exists(models) and not os.path.exists(tmp_path / "z.npy")
    assert not os.path.exists(tmp_path / "w")
