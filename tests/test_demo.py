"""demo --tiny: every step runs with the repository's flagfiles, a rerun reuses them, errors are clean."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT

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
            for d, _, files in os.walk(work) for f in files if f not in ("steps.json", ".demo.lock")}


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
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
    from tf_dance import savedmodels  # the LSTM records the autoencoder training whose latents it learnt
    training = savedmodels.training_id(str(work / "saved_models" / "decoder" / "1"))
    assert training and savedmodels.learnt_from(savedmodels.record(str(work / "saved_models" / "dance_lstm" / "1"))) \
        == training == json.loads((work / "latents_encoder.json").read_text())["training_id"]
    assert (work / "ae" / ".written-by-tf_dance").read_text() == "demo\n"
    latents = np.load(work / "dance_latents.npy")
    assert latents.shape == (60, 128) and np.all(np.isfinite(latents))
    assert Image.open(work / "dance.gif").size == (192, 108)
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert metrics["dancers"][0]["frames"] == 60 and set(metrics["verdicts"]) >= {"frozen", "copying"}


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
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
@pytest.mark.xdist_group("demo")
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
    (["--music", "--music_flags=no_music.flags"], "--music_flags: flagfile no_music.flags not found"),
    (["--flagfile=/dev/null"], "--dancer_frames, --autoencoder_flags, --lstm_flags, --frames not set"),
])
def test_bad_settings_fail_before_any_step(run_module, fails_cleanly, tmp_path, args, message):
    work = tmp_path / "never"
    fails_cleanly(run_module("tf_dance.demo", f"--workdir={work}", *args), message)
    assert not work.exists()


@pytest.mark.parametrize("args, message", [
    (["--noise=nan"], "--noise must be a finite number"),
    (["--temperature=inf"], "--temperature must be a finite number"),
    (["--frames=100000000"], "frames"),
    (["--dancer_frames=100000000"], "dancer_frames"),
])
def test_bad_demo_flags_fail_before_step_one(run_module, fails_cleanly, tmp_path, args, message):
    work = tmp_path / "never"
    result = run_module("tf_dance.demo", "--tiny", f"--workdir={work}", *args)
    fails_cleanly(result, message)
    assert "[1/6]" not in result.stdout and not work.exists()


def test_the_demo_never_clears_a_folder_it_did_not_write(run_module, fails_cleanly, tmp_path):
    """A user's own W/ae (or W/lstm) is refused before any step, even with --force; the lock of a demo that
    was killed does not stand in the way."""
    work = tmp_path / "w"
    (work / "ae").mkdir(parents=True)
    (work / "ae" / "thesis.txt").write_text("mine")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom tf_dance import demo\nwith "
                               "demo.workdir_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(300)",
                               str(work)], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ,
                                       PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])))
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)  # a demo killed while it held the workdir
    holder.wait()
    holder.stdout.close()
    for extra in ([], ["--force"]):
        result = run_module("tf_dance.demo", "--tiny", f"--workdir={work}", *extra)
        fails_cleanly(result, f"{work}/ae holds files the demo did not write")
        assert "[1/6]" not in result.stdout
    assert (work / "ae" / "thesis.txt").read_text() == "mine"
    assert sorted(os.listdir(work)) == [".demo.lock", "ae"]


def test_a_second_demo_on_one_workdir_is_refused(run_module, fails_cleanly, tmp_path):
    from tf_dance import demo
    work = tmp_path / "w"
    work.mkdir()
    with demo.workdir_lock(str(work)):
        fails_cleanly(run_module("tf_dance.demo", "--tiny", f"--workdir={work}"),
                      f"another demo (pid {os.getpid()}) or a step it started is still running in {work}")
    assert os.listdir(work) == [".demo.lock"]
def test_ctrl_c_ends_the_demo_and_its_step_with_one_line(tmp_path, interrupt):
    """A SIGINT sent to the demo alone reaches the step it runs: both stop, with one line between them."""
    import subprocess
    import sys
    import time
    work = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    process = subprocess.Popen([sys.executable, "-m", "tf_dance.demo", "--tiny", f"--workdir={work}"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("$ python -m tf_dance.train_autoencoder"):
            break
    started = time.time()
    out, err = interrupt(process, lambda: time.time() > started + 4, timeout=180)
    assert process.returncode == 130, err[-2000:]
    assert err.strip().splitlines() == [
        "interrupted; run the same command again to resume (finished steps are reused)"], err[-4000:]
    assert "generate" not in json.load(open(work / "steps.json"))
    assert [n for d, dirs, files in os.walk(work) for n in dirs + files if n.startswith(".tmp")] == []
