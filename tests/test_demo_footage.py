"""demo --video: the one-command run on the user's own footage (tiny), its footage options, preview, sizing,
reuse and clean errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def footage(tiny_dancer, tmp_path_factory):
    """Two short mp4 clips that look different, the dancer and the dancer mirrored, each dark on a light
    ground (so that they need --invert)."""
    from tf_dance import video
    base = tmp_path_factory.mktemp("footage")
    frames = 255 - tiny_dancer["frames"]
    return [video.write_video(str(base / "one.mp4"), frames[:110], 24.0),
            video.write_video(str(base / "two.mp4"), frames[120:230, :, ::-1], 24.0)]


@pytest.fixture(scope="module")
def footage_demo(run_module, footage, tmp_path_factory):
    work = tmp_path_factory.mktemp("demo") / "run"
    result = run_module("tf_dance.demo", "--tiny", *(f"--video={v}" for v in footage), "--invert",
                        f"--workdir={work}", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, result


@pytest.mark.slow
@pytest.mark.xdist_group("footage_demo")
def test_one_command_runs_every_step_on_the_footage(footage_demo, footage):
    work, result = footage_demo
    out = result.stdout
    assert "your footage (2 videos)" in out
    for i, script in enumerate(["prepare_video", "train_autoencoder", "encode", "train_lstm", "generate",
                                "evaluate"], 1):
        assert f"[{i}/6]" in out and f"-m tf_dance.{script} " in out
    assert (f"-m tf_dance.prepare_video --video={footage[0]} --video={footage[1]} --invert --out={work}/footage.npz "
            f"--preview={work}/footage_preview.png") in out
    with np.load(work / "footage.npz") as dataset:  # the dataset prepare_video made of the two clips
        frames, clips = len(dataset["frames"]), int(dataset["clips"].max()) + 1 if "clips" in dataset else 1
    # ~200 frames: too few for the flagfile's 4 streams of 20-step windows
    assert f"sized for your footage: {frames} frames in {clips} clips" in out
    assert "--batch_size=1 (flagfile: 4)" in out
    lstm_line = next(line for line in out.splitlines() if "-m tf_dance.train_lstm " in line)
    assert lstm_line.endswith("--batch_size=1") and "tiny_lstm.flags" in lstm_line
    assert f"--calibrate_decoder={work}/saved_models/decoder" in lstm_line and "--calibrate_fps=" in lstm_line
    assert "Exporting epoch" in out
    assert f"dance video:  {work}/dance.mp4" in out
    assert f"your footage as the models see it: {work}/footage_preview.png  (dataset: footage.npz)" in out
    from PIL import Image
    assert (np.asarray(Image.open(work / "footage_preview.png")) >= 128).mean() < 0.2  # white dancers on black
    assert "verdicts:" in out
    steps = json.loads((work / "steps.json").read_text())
    assert sorted(steps) == sorted(["prepare", "autoencoder", "encode", "lstm", "generate", "evaluate"])
    latents = np.load(work / "dance_latents.npy")
    assert latents.shape == (60, 128) and np.all(np.isfinite(latents))
    info = json.load(open(work / "saved_models" / "dance_lstm" / "1" / "tf_dance.json"))
    assert info["config"]["batch_size"] == 1 and 1 <= info["best_epoch"] <= info["trained_epochs"]


@pytest.mark.slow
@pytest.mark.xdist_group("footage_demo")
def test_rerun_reuses_every_footage_step(footage_demo, footage, run_module):
    work, _ = footage_demo
    result = run_module("tf_dance.demo", "--tiny", *(f"--video={v}" for v in footage), "--invert",
                        f"--workdir={work}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("reused from an earlier run") == 6 and "$ python" not in result.stdout
    assert "sized for your footage: " in result.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("footage_demo")
def test_a_changed_footage_option_redoes_the_preparation(footage_demo, footage, run_module):
    """Without --invert the key of the first step changes: it runs again, and refuses the inverted frames."""
    work, _ = footage_demo
    result = run_module("tf_dance.demo", "--tiny", *(f"--video={v}" for v in footage), f"--workdir={work}")
    assert result.returncode == 1 and "reused" not in result.stdout
    assert "pass --invert for a dark dancer on a light ground" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: step `prepare_video` failed with exit code 1 (see " \
                                                      "its message above)"


@pytest.mark.parametrize("args, message", [
    (["--video=/no/such/clip.mp4"], "--video: /no/such/clip.mp4 is not a file"),
    (["--video=VIDEO", "--flagfile=/dev/null"], "--autoencoder_flags, --lstm_flags, --frames not set"),
    (["--video=VIDEO", "--lstm_flags=nope.flags"], "nope.flags not found"),
    (["--video=VIDEO", "--flags_dir=TMP"], "footage_autoencoder.flags not found"),
    (["--invert", "--fit=crop"], "--fit=crop, --invert: footage options apply to --video only"),
])
def test_bad_footage_settings_fail_before_any_step(run_module, fails_cleanly, footage, tmp_path, args, message):
    work = tmp_path / "never"
    args = [a.replace("VIDEO", footage[0]).replace("TMP", str(tmp_path)) for a in args]
    fails_cleanly(run_module("tf_dance.demo", f"--workdir={work}", *args), message)
    assert not work.exists()


def test_footage_defaults_name_the_footage_flagfiles(tmp_path):
    """Without --tiny the footage flagfiles are used: a staged autoencoder, an LSTM that stops at its best."""
    script = (
        "import sys; from tf_dance import demo, sequence_training as t\n"
        "print(demo.with_default_flagfile(['demo', '--video=x.mp4'])[1])\n"
        "cfg = t.resolve_config(t.flagfile_settings(sys.argv[1] + '/flags/footage_lstm.flags'))\n"
        "print(cfg['dropout'], cfg['patience'], cfg['train_frac'])\n")
    result = subprocess.run([sys.executable, "-c", script, ROOT], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    flagfile, lstm = result.stdout.split("\n")[:2]
    assert flagfile == f"--flagfile={ROOT}/flags/footage.flags"
    dropout, patience, train_frac = map(float, lstm.split())
    assert dropout > 0 and patience > 0 and train_frac < 1
    text = open(os.path.join(ROOT, "flags", "footage.flags")).read()
    assert "--autoencoder_flags=footage_autoencoder.flags" in text and "--lstm_flags=footage_lstm.flags" in text
    from tf_dance import autoencoder_training
    ae = autoencoder_training.check_config(
        autoencoder_training.flagfile_settings(os.path.join(ROOT, "flags", "footage_autoencoder.flags")))
    assert ae["stage"] and ae["augment_flip"]
    from tf_dance import sequence_training, stage  # the LSTM's recipe treats the staged latents' box as a box
    lstm_cfg = sequence_training.resolve_config(
        sequence_training.flagfile_settings(os.path.join(ROOT, "flags", "footage_lstm.flags")))
    assert lstm_cfg["rollout_box_dims"] == stage.BOX_DIMS and lstm_cfg["rollout_box_smoothing"] > 0
    assert lstm_cfg["rollout_coherence"] > 0 and lstm_cfg["rollout_box_in_picture"]
    assert lstm_cfg["box_loss_weight"] > 1  # the box counts enough in the loss for the dancer to travel
