"""`train_lstm`: bad inputs, flagfiles, and resuming a killed run (script through subprocess, library directly)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_dance import cli, perlin, savedmodels, sequence_training

from conftest import ROOT


def _flagfile(name):
    return sequence_training.flagfile_settings(os.path.join(ROOT, "flags", name))


def test_paper_flagfile_is_the_papers_setting():
    cfg = sequence_training.resolve_config(_flagfile("paper_lstm.flags"))
    assert (cfg["model"], cfg["head"], cfg["num_layers"], cfg["units"], cfg["batch_size"], cfg["seq_length"]) == \
        ("lstm", "mse", 2, 600, 5, 50)
    assert (cfg["grad_clip"], cfg["clip"], cfg["lr_decay"], cfg["lr_decay_after"], cfg["train_frac"]) == \
        (5.0, "value", 0.97, 10, 0.95)
    assert cfg["condition_steps"] == 0 and cfg["input_noise"] == 0 and cfg["init"] == "charrnn" and cfg["dim"] == 128


def _latents(tmp_path, frames=300, dim=10, name="z.npy", bad=None):
    z = perlin.perlin_vectors(frames, seed=0, dim=dim)
    if bad is not None:
        z[frames // 2, 3] = bad
    path = str(tmp_path / name)
    np.save(path, z)
    return path


@pytest.mark.parametrize("latents,settings,message", [
    (dict(bad=np.nan), {}, "NaN or inf"),
    (dict(bad=np.inf), {}, "NaN or inf"),
    (dict(bad=1e30), {}, r"latent values reach 1e\+30, beyond the 1e\+06 accepted"),
    (dict(dim=10), dict(dim=128), "10-d but the model needs 128-d"),
    (dict(frames=80), dict(batch_size=4, seq_length=20), "too few"),
    ({}, dict(units=0), "units must be >= 1"),
    ({}, dict(lr_decay=1.5), "lr_decay must be <= 1"),
    ({}, dict(learning_rate=float("nan")), "learning_rate must be a finite"),
    ({}, dict(clip="max"), "clip must be one of"),
    ({}, dict(unit=8), "unknown setting"),
    ({}, dict(rollout_box_dims=10), "box_dims must be an integer in 0..9"),
    ({}, dict(rollout_box_smoothing=1.0), "rollout_box_smoothing must be < 1"),
    ({}, dict(rollout_box_width=-0.5), "rollout_box_width must be >= 0"),
    ({}, dict(rollout_coherence=1.0), "rollout_coherence must be < 1"),
    ({}, dict(rollout_box_in_picture=True), "box_in_picture needs box_dims=3"),
])
def test_bad_input_raises_one_clear_error_and_writes_nothing(tmp_path, latents, settings, message):
    path = _latents(tmp_path, **latents)
    tiny = dict(_flagfile("tiny_lstm.flags"), **settings)
    with pytest.raises(cli.UserError, match=message):
        sequence_training.train_and_evaluate(path, str(tmp_path / "run"), str(tmp_path / "saved"), **tiny)
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]


def _cli(*args, **popen):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "tf_dance.train_lstm", f"--flagfile={ROOT}/flags/tiny_lstm.flags", *args]
    if popen:
        return subprocess.Popen(command, cwd=ROOT, env=env, **popen)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("bad,flags,message", [
    (np.nan, [], "NaN or inf"),
    (1e30, [], "latent values reach 1e+30, beyond the 1e+06 accepted"),
    (None, ["--input_noise=nan"], "--input_noise must be a finite number, got nan"),
    (None, ["--rollout_noise=inf"], "--rollout_noise=inf: inf is not a number in the range [0.0, 1000.0]"),
    (None, ["--lr_decay=0"], "--lr_decay must be > 0"),
    (None, ["--rollout_box_dims=12"], "box_dims must be an integer in 0..9"),
    (None, ["--rollout_box_smoothing=1"], "--rollout_box_smoothing must be >= 0.0 and must be < 1.0"),
])
def test_cli_bad_input_one_error_line_nonzero_exit_nothing_written(tmp_path, fails_cleanly, bad, flags, message):
    path = _latents(tmp_path, bad=bad)
    result = _cli(f"--latents={path}", f"--workdir={tmp_path}/run", f"--export_dir={tmp_path}/saved", *flags)
    fails_cleanly(result, message)
    assert sorted(os.listdir(tmp_path)) == ["z.npy"]


@pytest.mark.slow
def test_resume_after_kill_finishes_at_the_requested_epoch_count(tmp_path, kill_at_first_checkpoint):
    path = _latents(tmp_path, frames=600)
    workdir, saved = tmp_path / "run", tmp_path / "saved"
    killed = _cli(f"--latents={path}", f"--workdir={workdir}", f"--export_dir={saved}", "--epochs=100000",
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_at_first_checkpoint(killed, workdir)
    assert not os.path.exists(saved / "dance_lstm" / "1")  # a killed run exports nothing
    done = int(tf.train.latest_checkpoint(str(workdir / "checkpoints")).rsplit("-", 1)[1])
    target = done + 2

    resumed = _cli(f"--latents={path}", f"--workdir={workdir}", f"--export_dir={saved}", f"--epochs={target}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming from" in resumed.stdout and f"Done: {target} epochs" in resumed.stdout
    assert f"Epoch {done + 1}/{target}" in resumed.stdout and f"Epoch {done}/" not in resumed.stdout
    history = json.load(open(workdir / "history.json"))
    assert [h["epoch"] for h in history] == list(range(1, target + 1))
    # Output to a pipe: plain lines, one per epoch at least, each with the time of the whole run.
    assert not any(c in resumed.stdout for c in "\r\b\x1b")
    assert f"TensorBoard logs: tensorboard --logdir {workdir}/tensorboard" in resumed.stdout
    epoch_lines = [line for line in resumed.stdout.splitlines() if line.startswith(f"Epoch {target - 1}/{target}:")]
    assert len(epoch_lines) == 1 and "elapsed, ~" in epoch_lines[0] and "left" in epoch_lines[0]
    events = tf.io.gfile.glob(str(workdir / "tensorboard" / "events.out.tfevents*"))
    logged = {}
    for record in tf.data.TFRecordDataset(events):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            logged.setdefault(value.tag, []).append(event.step)
    assert sorted(logged["train_loss"]) == list(range(1, target + 1)) and "val_loss" in logged
    assert savedmodels.versions(str(saved / "dance_lstm")) == [1]

    # The interruption changed nothing: an uninterrupted run with the same settings gives the same losses.
    straight = sequence_training.train_and_evaluate(path, str(tmp_path / "straight"), str(tmp_path / "saved2"),
                                                    **dict(_flagfile("tiny_lstm.flags"), epochs=target))
    np.testing.assert_allclose([h["train_loss"] for h in history],
                               [h["train_loss"] for h in straight["history"]], rtol=1e-4)

    with pytest.raises(cli.UserError, match="other settings"):  # resuming with another model is refused
        sequence_training.train_and_evaluate(path, str(workdir), str(saved),
                                             **dict(_flagfile("tiny_lstm.flags"), units=17, epochs=target + 1))


def test_ctrl_c_stops_training_with_one_line_and_exit_code_130(tmp_path, interrupt):
    """SIGINT (Ctrl-C) mid-training: one line on stderr, no traceback, nothing half-written, nothing exported."""
    path = _latents(tmp_path, frames=600)
    workdir, saved = tmp_path / "run", tmp_path / "saved"
    process = _cli(f"--latents={path}", f"--workdir={workdir}", f"--export_dir={saved}", "--epochs=100000",
                   "--head=mdn", "--mixtures=2", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = interrupt(process, lambda: os.path.exists(workdir / "checkpoints" / "checkpoint"))
    assert process.returncode == 130, err[-2000:]
    assert err.strip().splitlines() == ["interrupted; run the same command again to resume"]
    assert "below 0 once the model puts a density above 1" in out  # the mixture's loss explained
    assert not os.path.exists(saved / "dance_lstm")
    leftovers = [os.path.join(d, n) for d, dirs, files in os.walk(tmp_path) for n in dirs + files
                 if n.startswith(".tmp")]
    assert leftovers == []


def test_without_a_flagfile_the_papers_settings_are_announced(tmp_path, fails_cleanly):
    path = _latents(tmp_path, frames=1000)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "tf_dance.train_lstm", f"--latents={path}",
                             f"--workdir={tmp_path}/run", f"--export_dir={tmp_path}/saved", "--dim=128"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    fails_cleanly(result, "10-d but the model needs 128-d")  # stops it after the announcement
    first = result.stdout.splitlines()[0]
    assert first.startswith("No --flagfile: the paper's settings (those not given as flags): a 2 x 600 LSTM with "
                            "the mse head, 50 epochs of 950 frames at batch 5. Estimated 16 s"), first
    assert first.endswith("--flagfile=flags/quick_lstm.flags.")
