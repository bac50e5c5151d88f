"""demo --tiny: every step runs with the repository's flagfiles, a rerun reuses them, errors are clean."""

import json
import os

import numpy as np
import pytest
from PIL import Image

STEPS = ["synthesize", "autoencoder", "encode", "lstm", "generate", "evaluate"]


@pytest.fixture(scope="module")
def demo(run_module, tmp_path_factory):
    """One full `demo --tiny` run: (workdir, CompletedProcess)."""
    work = tmp_path_factory.mktemp("demo") / "run"
    result = run_module("tf_dance.demo", "--tiny", f"--workdir={work}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, result


def _mtimes(work):
    return {os.path.join(d, f): os.path.getmtime(os.path.join(d, f))
            for d, _, files in os.walk(work) for f in files if f != "steps.json"}


@pytest.mark.slow
def test_tiny_demo_runs_every_step_and_writes_the_dance(demo):
    work, result = demo
    out = result.stdout
    for i, script in enumerate(["synthesize", "train_autoencoder", "encode", "train_lstm", "generate",
                                "evaluate"], 1):
        assert f"[{i}/6]" in out and f"-m tf_dance.{script} " in out
    assert "tiny_autoencoder.flags" in out and "tiny_lstm.flags" in out
    assert f"dance video:  {work}/dance.mp4" in out and "verdicts:" in out
    steps = json.loads((work / "steps.json").read_text())
    assert sorted(steps) == sorted(STEPS)
    for name in ("encoder", "decoder", "dance_lstm"):
        assert os.listdir(work / "saved_models" / name) == ["1"]
    latents = np.load(work / "dance_latents.npy")
    assert latents.shape == (60, 128) and np.all(np.isfinite(latents))
    assert Image.open(work / "dance.gif").size == (192, 108)
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert metrics["dancers"][0]["frames"] == 60 and set(metrics["verdicts"]) >= {"frozen", "copying"}


@pytest.mark.slow
def test_rerun_reuses_finished_steps_and_redoes_missing_ones(demo, run_module):
    work, _ = demo
    before = _mtimes(work)
    result = run_module("tf_dance.demo", "--tiny", f"--workdir={work}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("reused from an earlier run") == 6 and "$ python" not in result.stdout
    assert _mtimes(work) == before

    # A lost output is remade, and only the steps that need it run again.
    for f in os.listdir(work / "eval"):
        os.remove(work / "eval" / f)
    result = run_module("tf_dance.demo", "--tiny", f"--workdir={work}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("reused from an earlier run") == 5
    assert "-m tf_dance.evaluate " in result.stdout and "-m tf_dance.generate " not in result.stdout
    assert (work / "eval" / "metrics.json").exists()
    assert os.path.getmtime(work / "dance.mp4") == before[str(work / "dance.mp4")]


@pytest.mark.slow
def test_changed_settings_redo_the_step_and_a_failing_step_stops_cleanly(demo, run_module, tmp_path):
    work, _ = demo
    bad = tmp_path / "bad_lstm.flags"
    bad.write_text("--units=0\n")
    result = run_module("tf_dance.demo", "--tiny", f"--workdir={work}", f"--lstm_flags={bad}")
    assert result.returncode == 1
    assert result.stdout.count("reused from an earlier run") == 3 and "-m tf_dance.train_lstm " in result.stdout
    assert "error: step `train_lstm` failed" in result.stderr and "Traceback" not in result.stderr
    assert os.listdir(work / "saved_models" / "dance_lstm") == ["1"]


@pytest.mark.parametrize("args, message", [
    (["--autoencoder_flags=no_such.flags"], "no_such.flags not found"),
    (["--dancer_frames=10"], "dancer_frames"),
    (["--flagfile=/dev/null"], "--dancer_frames, --autoencoder_flags, --lstm_flags, --frames not set"),
])
def test_bad_settings_fail_before_any_step(run_module, fails_cleanly, tmp_path, args, message):
    work = tmp_path / "never"
    fails_cleanly(run_module("tf_dance.demo", f"--workdir={work}", *args), message)
    assert not work.exists()
