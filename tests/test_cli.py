"""`cli`: outputs appear whole or not at all, with the usual permissions, and exports never share a version."""

import contextlib
import os
import re
import stat
import subprocess
import sys
import threading
import time

import pytest

from tf_dance import cli

from conftest import ROOT


class Boom(Exception):
    pass


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def run_threads(target, args):
    """Runs `target(*a)` for each `a` in `args`, each in its own thread, and waits for all."""
    threads = [threading.Thread(target=target, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_atomic_file_appears_only_on_success(tmp_path):
    path = tmp_path / "out" / "result.npy"
    with cli.atomic_output(str(path)) as tmp:
        assert tmp.endswith(".npy") and os.path.dirname(tmp) == str(path.parent)
        with open(tmp, "w") as f:
            f.write("done")
        assert not path.exists()
    assert path.read_text() == "done"
    assert os.listdir(path.parent) == ["result.npy"]


def _fail_half_way(path, error=Boom):
    with pytest.raises(error):
        with cli.atomic_output(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise error()


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_atomic_file_leaves_nothing_on_failure(tmp_path, error):
    path = tmp_path / "result.txt"
    _fail_half_way(path, error)
    assert os.listdir(tmp_path) == []
    path.write_text("old")
    _fail_half_way(path, error)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["result.txt"]


def test_atomic_directory_appears_only_on_success(tmp_path):
    path = tmp_path / "model"
    for content in ("first", "second"):
        with cli.atomic_output(str(path), is_dir=True, owner="test") as tmp:
            assert os.path.isdir(tmp) and os.listdir(tmp) == []
            open(os.path.join(tmp, content), "w").write(content)
        assert sorted(os.listdir(path)) == sorted([content, cli._MARKER])  # a second run replaces the first whole
    with pytest.raises(Boom):
        with cli.atomic_output(str(path), is_dir=True, owner="test") as tmp:
            os.makedirs(os.path.join(tmp, "sub"))
            open(os.path.join(tmp, "sub", "half"), "w").write("half")
            raise Boom()
    assert os.listdir(tmp_path) == ["model"] and sorted(os.listdir(path)) == sorted(["second", cli._MARKER])


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_atomic_outputs_follow_the_umask(tmp_path, mask):
    """The temporary file is private while written (mkstemp's 0600); the result is what `open` would make."""
    with umask(mask):
        with cli.atomic_output(str(tmp_path / "f.txt")) as tmp:
            open(tmp, "w").close()
        with cli.atomic_output(str(tmp_path / "d"), is_dir=True, owner="test"):
            pass
        open(tmp_path / "plain.txt", "w").close()
        os.mkdir(tmp_path / "plain")
        assert os.umask(mask) == mask  # left as it was
    assert mode(tmp_path / "f.txt") == mode(tmp_path / "plain.txt") == 0o666 & ~mask
    assert mode(tmp_path / "d") == mode(tmp_path / "plain") == 0o777 & ~mask


def _writer(text):
    def write(directory):
        with open(os.path.join(directory, "who"), "w") as f:
            f.write(text)
    return write


def test_export_version_numbers_1_2_3(tmp_path):
    found = [cli.export_version(str(tmp_path), "decoder", _writer(str(i))) for i in range(3)]
    assert found == [str(tmp_path / "decoder" / str(v)) for v in (1, 2, 3)]
    assert [open(os.path.join(d, "who")).read() for d in found] == ["0", "1", "2"]
    assert sorted(os.listdir(tmp_path / "decoder")) == ["1", "2", "3"]  # no temporary left


def test_export_version_never_reuses_an_abandoned_number(tmp_path):
    root = tmp_path / "encoder"
    (root / "4").mkdir(parents=True)  # an export killed half-way: empty
    (root / "7").mkdir()
    (root / "7" / "variables").mkdir()  # or half-written
    (root / "notes").mkdir()
    (root / ".tmp-export-old").mkdir()
    assert cli.export_version(str(tmp_path), "encoder", _writer("new")) == str(root / "8")
    assert os.listdir(root / "4") == [] and os.listdir(root / "7") == ["variables"]
    assert cli.export_version(str(tmp_path), "encoder", lambda d: None) == str(root / "9")


def test_export_version_failure_leaves_nothing(tmp_path):
    cli.export_version(str(tmp_path), "m", _writer("ok"))

    def fail(directory):
        _writer("half")(directory)
        raise Boom()

    with pytest.raises(Boom):
        cli.export_version(str(tmp_path), "m", fail)
    assert os.listdir(tmp_path / "m") == ["1"]
    assert cli.export_version(str(tmp_path), "m", _writer("ok")) == str(tmp_path / "m" / "2")


def test_export_version_follows_the_umask(tmp_path):
    with umask(0o027):
        final = cli.export_version(str(tmp_path), "m", _writer("x"))
    assert mode(final) == 0o750


@pytest.mark.parametrize("empty", [False, True])
def test_concurrent_threads_get_distinct_versions(tmp_path, empty):
    """Threads that all start exporting at once each get a version of their own, even where
    the exports are empty (an empty directory could otherwise be renamed over)."""
    n = 12
    start = threading.Barrier(n)
    found = [None] * n

    def export(i):
        def write(directory):
            if not empty:
                _writer(str(i))(directory)
            start.wait()
        found[i] = cli.export_version(str(tmp_path), "m", write)

    with umask(0o022):
        run_threads(export, [(i,) for i in range(n)])
        assert os.umask(0o022) == 0o022
    assert sorted(found) == sorted(str(tmp_path / "m" / str(v)) for v in range(1, n + 1))
    assert sorted(os.listdir(tmp_path / "m")) == sorted(str(v) for v in range(1, n + 1))
    for i, directory in enumerate(found):
        assert mode(directory) == 0o755
        assert os.listdir(directory) == ([] if empty else ["who"])
        if not empty:
            assert open(os.path.join(directory, "who")).read() == str(i)


_EXPORT = """
import os, sys, time
from tf_dance import cli
root, me, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
def write(directory):
    with open(os.path.join(directory, "who"), "w") as f:
        f.write(me)
while time.time() < start:
    time.sleep(0.001)
for i in range(4):
    print(cli.export_version(root, "m", write))
"""


def test_concurrent_processes_get_distinct_versions(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    start = time.time() + 2.0  # every process is waiting by then: all export at once
    procs = [subprocess.Popen([sys.executable, "-c", _EXPORT, str(tmp_path), str(p), str(start)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in range(6)]
    found = {}
    for p, proc in enumerate(procs):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        for line in out.split():
            assert line not in found, f"{line} returned to processes {found[line]} and {p}"
            found[line] = p
    assert sorted(found) == sorted(str(tmp_path / "m" / str(v)) for v in range(1, 25))
    for directory, p in found.items():
        assert open(os.path.join(directory, "who")).read() == str(p)


def test_threads_leave_the_umask_alone(tmp_path, monkeypatch):
    """The umask can only be read by setting it: two threads doing that at once, as concurrent
    outputs do, could leave the process's umask at 0. A slowed `os.umask` makes them overlap."""
    real_umask = os.umask

    def slow_umask(mask):
        old = real_umask(mask)
        time.sleep(0.02)
        return old

    paths = [tmp_path / str(i) for i in range(4)]
    for path in paths:
        path.write_text("")
    with umask(0o022):
        monkeypatch.setattr(os, "umask", slow_umask)
        run_threads(cli._default_permissions, [(str(p), False) for p in paths])
        monkeypatch.undo()
        assert os.umask(0o022) == 0o022
    assert {mode(p) for p in paths} == {0o644}


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_on_a_pipe_prints_plain_lines_every_ten_seconds_with_time_left():
    import io
    out, clock = io.StringIO(), FakeClock()
    progress = cli.Progress(1000, unit="step", done=200, stream=out, clock=clock)
    for step in range(201, 1001):
        clock.now += 0.1  # 80 s for the 800 steps of this run
        progress.update(step, [("loss", 1.0 / step)])
    text = out.getvalue()
    assert not any(c in text for c in "\r\b\x1b")
    lines = text.splitlines()
    assert lines[0].startswith("201/1,000 steps (20%)  loss ") and "0 s elapsed, ~" in lines[0]
    assert lines[-1].startswith("1,000/1,000 steps (100%)") and lines[-1].endswith("| 1 min 20 s elapsed")
    elapsed = [line.split("| ")[1].split(" elapsed")[0] for line in lines[1:-1]]
    assert elapsed == ["10 s", "20 s", "30 s", "40 s", "50 s", "1 min 00 s", "1 min 10 s"], text  # not every update
    assert "| 10 s elapsed, ~1 min 10 s left" in lines[1]  # of the whole run: 700 steps at 10 steps a second


def test_progress_on_a_terminal_redraws_one_line_and_writes_beside_it():
    import io
    out, clock = io.StringIO(), FakeClock()
    progress = cli.Progress(10, unit="batch", stream=out, clock=clock, live=True)
    for i in range(1, 11):
        clock.now += 1
        progress.update(i)
        if i == 5:
            progress.write("epoch 1 done")
    text = out.getvalue()
    assert text.count("\n") == 2 and text.endswith("10/10 batches  | 10 s elapsed\n")
    assert "\r\x1b[Kepoch 1 done\n\r\x1b[K[" in text  # the bar is cleared, the line printed, the bar redrawn
    stopped = cli.Progress(10, stream=io.StringIO(), clock=clock, live=True)
    stopped.update(5)
    stopped.close()  # stopped early: the next line starts on a line of its own
    assert stopped.stream.getvalue().endswith(" | 0 s elapsed, ~0 s left\n")


def test_plural_and_duration():
    assert cli.plural(1, "clip") == "1 clip" and cli.plural(2, "clip") == "2 clips"
    assert cli.plural(1474, "frame") == "1,474 frames"
    assert [cli.duration(s) for s in (4.4, 65, 7500)] == ["4 s", "1 min 05 s", "2 h 05 min"]


def test_flagfiles_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    installed = os.path.join(ROOT, "flags", "quick.flags")
    assert cli.find_flagfile("flags/quick.flags") == installed and cli.find_flagfile("quick.flags") == installed
    (tmp_path / "flags").mkdir()
    (tmp_path / "flags" / "quick.flags").write_text("--steps=1\n")
    assert cli.find_flagfile("flags/quick.flags") == "flags/quick.flags"  # the working directory's own wins
    assert cli.find_flagfile("elsewhere/quick.flags") == "elsewhere/quick.flags"  # other paths are left alone


def test_a_script_reads_a_flagfile_named_from_another_directory(tmp_path, fails_cleanly):
    """Both spellings reach the script (it then stops at the missing --latents, not at the flagfile)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "tf_dance.train_lstm", "--flagfile=flags/tiny_lstm.flags",
                             "--flagfile=tiny_lstm.flags"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    fails_cleanly(result, "no latents file (--latents) given")


@pytest.mark.parametrize("script, own", [
    ("train_lstm", {"latents", "workdir", "export_dir"}),
    ("calibrate", {"latents", "workdir", "export_dir"}),
    ("demo", {"workdir", "video", "invert", "threshold", "crop", "fit", "fps", "check_footage", "frames"}),
])
def test_help_lists_the_scripts_own_flags_and_settings_only(script, own):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", f"tf_dance.{script}", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]  # absl ends --help with exit code 1
    listed = set(re.findall(r"^  --(?:\[no\])?(\w+)", result.stdout, re.M))
    assert own <= listed
    if script in ("train_lstm", "calibrate"):
        from tf_dance import sequence_training
        assert listed == own | set(sequence_training.SETTINGS)
    assert not listed & {"verbosity", "flagfile", "helpfull", "logtostderr", "only_check_args"}
    assert result.stdout.count(".py:\n") == 1  # one section: the script's own


def test_a_script_whose_work_is_over_lets_its_clean_up_finish(monkeypatch):
    """After a script's main returns, fails or is interrupted, a Ctrl-C (or the one the demo passes on to a step
    that was just ending) no longer interrupts TensorFlow's atexit clean-up with a traceback; a library caller's
    own handler is left alone."""
    import signal

    def done(argv):
        return 0

    def interrupted(argv):
        raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGINT)
    try:
        monkeypatch.setattr(cli, "_SCRIPT", [])
        assert cli.main(done)(["x"]) == 0
        assert signal.getsignal(signal.SIGINT) is before
        monkeypatch.setattr(cli, "_SCRIPT", [True])
        assert cli.main(done)(["x"]) == 0
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        signal.signal(signal.SIGINT, before)
        with pytest.raises(SystemExit) as stopped:
            cli.main(interrupted)(["x"])
        assert stopped.value.code == 130 and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("interrupt")  # the script must have Python's Ctrl-C handler, as in a terminal
def test_a_ctrl_c_in_a_finalizer_still_stops_the_script_with_one_line():
    """A KeyboardInterrupt raised inside a `__del__` (TensorFlow's finalizers run often) is not printed as
    "Exception ignored" and lost: the script stops with the one line and exit code 130."""
    code = ("import time\nfrom tf_dance import cli\ncli.quiet_interrupts()\n"
            "class Finalized:\n    def __del__(self):\n        raise KeyboardInterrupt\n"
            "Finalized()\nfor _ in range(100):\n    time.sleep(0.1)\nprint('not stopped')\n")
    env = {k: v for k, v in os.environ.items() if k != cli._QUIET_INTERRUPT}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(env, PYTHONPATH=ROOT), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 130, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [cli.INTERRUPTED] and "not stopped" not in r.stdout
