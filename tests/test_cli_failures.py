"""Output-side failures and TensorFlow's chatter: every script ends a failure in one error line.

A file where a directory must go, a full disk (a small RLIMIT_FSIZE: writes past it fail with
EFBIG), an oversized batch; run without TF_CPP_MIN_LOG_LEVEL, so TensorFlow's own start-up lines
would show if they were not kept off the terminal.
"""

import os
import re
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from tf_dance import cli, data, savedmodels

from conftest import ROOT

DIM = 8


def _run(module, *args, cwd, file_size_limit=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, preexec_fn=limit_file_size if file_size_limit else None)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 300-frame dancer, 300 latents and untrained tiny models, exported as the trainers export them."""
    import keras
    from tf_dance import autoencoder, dancer as dancer_lib, rollout, sequence_model
    root = tmp_path_factory.mktemp("inputs")
    dancer = dancer_lib.dancer(300, seed=0, fps=24.0)
    data.save_dataset(str(root / "dancer.npz"), dancer["frames"], 24.0)
    latents = np.random.default_rng(0).normal(size=(300, DIM)).astype(np.float32)
    np.save(root / "latents.npy", latents)
    models = str(root / "saved_models")
    keras.utils.set_random_seed(0)
    encoder = autoencoder.build_encoder(54, 96, 1, [2, 2, 2, 2], latent_dim=DIM)
    decoder = autoencoder.build_decoder(54, 96, 1, [2, 2, 2, 2], latent_dim=DIM)
    cli.export_version(models, "encoder", lambda d: autoencoder.export_encoder(encoder, d))
    cli.export_version(models, "decoder", lambda d: autoencoder.export_decoder(decoder, d))
    lstm = sequence_model.build_model("lstm", DIM, latents.mean(0), latents.std(0), batch_size=1, units=8,
                                      num_layers=1)
    rollout.export(lstm, models, "dance_lstm")
    (root / "afile").write_text("a file where a directory must go")
    return root


TINY_AE = f"--flagfile={ROOT}/flags/tiny_autoencoder.flags"
TINY_LSTM = f"--flagfile={ROOT}/flags/tiny_lstm.flags"

# (script, arguments with the output in {out}); every input is valid, only the output is not.
SCRIPTS = {
    "encode": ("tf_dance.encode", ["--data=dancer.npz", "--encoder=saved_models/encoder", "--out={out}/l.npy",
                                   "--noprogress"]),
    "generate": ("tf_dance.generate", ["--model_dir=saved_models", "--latents=latents.npy", "--frames=60",
                                       "--seed_frames=5", "--out={out}/dance.mp4", "--noprogress"]),
    "evaluate": ("tf_dance.evaluate", ["--generated=latents.npy", "--latents=latents.npy", "--out_dir={out}",
                                       "--noprogress"]),
    "train_lstm": ("tf_dance.train_lstm", [TINY_LSTM, "--latents=latents.npy", "--workdir={out}",
                                           "--export_dir={out}/saved_models"]),
    "train_autoencoder": ("tf_dance.train_autoencoder", [TINY_AE, "--data=dancer.npz", "--workdir=work",
                                                         "--export_dir={out}"]),
}


def _args(name, out):
    module, args = SCRIPTS[name]
    return module, [a.format(out=out) for a in args]


def _no_temp_left(directory):
    return not [os.path.join(d, n) for d, dirs, files in os.walk(directory) for n in dirs + files
                if n.startswith(".tmp")]


def _only_line(result):
    """The error line, checked to be the only line on stderr (no TensorFlow start-up lines)."""
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_file_where_a_directory_must_go(inputs, name):
    module, args = _args(name, "afile")
    assert "afile" in _only_line(_run(module, *args, cwd=inputs))
    assert (inputs / "afile").read_text() == "a file where a directory must go"


@pytest.mark.parametrize("name, limit", [("encode", 4000), ("generate", 2500), ("evaluate", 4000),
                                         ("train_lstm", 2000)])
def test_a_full_disk(inputs, tmp_path, name, limit):
    module, args = _args(name, tmp_path / "out")
    line = _only_line(_run(module, *args, cwd=inputs, file_size_limit=limit))
    assert re.search("(cannot|could not) write .*(File too large|disk full|file size limit)", line), line
    assert _no_temp_left(tmp_path) and _no_temp_left(inputs / "saved_models")


def test_a_batch_larger_than_the_data(inputs):
    result = _run("tf_dance.train_autoencoder", TINY_AE, "--data=dancer.npz", "--workdir=big", "--batch_size=100000",
                  cwd=inputs)
    assert _only_line(result) == "error: batch_size 100000 is larger than the 270 training frames; lower --batch_size"


def test_training_prints_no_tensorflow_chatter(inputs, tmp_path):
    result = _run("tf_dance.train_lstm", TINY_LSTM, "--latents=latents.npy", f"--workdir={tmp_path}/work",
                  f"--export_dir={tmp_path}/saved_models", cwd=inputs)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]  # no start-up lines, Sharding/Assets/renaming INFO lines
    val = re.findall(r"^Epoch \d+/\d+: train loss \S+, val loss ([^ ,]+)", result.stdout, re.M)
    assert len(val) == 2 and all(len(v.replace(".", "")) <= 5 for v in val), result.stdout


def test_concurrent_exports_get_distinct_complete_versions(tmp_path):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor
    start = threading.Barrier(8)

    def write(directory):
        start.wait()
        time.sleep(0.05)
        (open(os.path.join(directory, "saved_model.pb"), "w")).close()

    with ThreadPoolExecutor(8) as pool:
        finals = list(pool.map(lambda _: cli.export_version(str(tmp_path), "model", write), range(8)))
    assert sorted(int(os.path.basename(f)) for f in finals) == list(range(1, 9))
    assert savedmodels.versions(str(tmp_path / "model")) == list(range(1, 9)) and _no_temp_left(tmp_path)


def _deny_writing(monkeypatch, *paths):
    """os.access says these directories are not writable (the tests may run as root, whom chmod does not stop)."""
    denied, real = {os.path.abspath(p) for p in paths}, os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode & os.W_OK and os.path.abspath(p) in denied
                        else real(p, mode, **kw))


def test_writability_is_judged_by_the_directory_itself(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    (locked / "mine").mkdir(parents=True)
    (tmp_path / "read_only").mkdir()
    _deny_writing(monkeypatch, locked, tmp_path / "read_only")
    assert cli.check_output(str(locked / "mine"), "--export_dir", is_dir=True)  # its parent does not matter
    for path in (tmp_path / "read_only", tmp_path / "read_only" / "encoder"):
        with pytest.raises(cli.UserError, match=f"{tmp_path / 'read_only'}.* not writable"):
            cli.check_output(str(path), "--export_dir", is_dir=True)
    with pytest.raises(cli.UserError, match="not writable"):  # a new entry, or a file replaced beside itself
        cli.check_output(str(locked / "new"), "--workdir", is_dir=True)


# os.access as `_deny_writing` has it, then the script run as __main__: `python -c DENY <dir> <module> <args>`
DENY = ("import os, runpy, sys\ndenied, real = os.path.abspath(sys.argv[1]), os.access\n"
        "os.access = lambda p, m, **k: False if m & os.W_OK and os.path.abspath(p) == denied else real(p, m, **k)\n"
        "sys.argv = sys.argv[2:]\nrunpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n")


@pytest.mark.parametrize("name", ["train_autoencoder", "train_lstm"])
def test_a_read_only_export_directory_is_refused_before_training(inputs, tmp_path, name):
    export = tmp_path / "export"
    module, args = _args(name, tmp_path)
    args = [a for a in args if not a.startswith(("--export_dir", "--workdir"))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    for read_only in (export, export / ("encoder" if name == "train_autoencoder" else "dance_lstm")):
        read_only.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([sys.executable, "-c", DENY, str(read_only), module, *args,
                                 f"--workdir={tmp_path}/work", f"--export_dir={export}"], cwd=inputs,
                                capture_output=True, text=True, timeout=300, env=env)
        assert f"{read_only}: it is not writable" in _only_line(result)
        assert "Epoch" not in result.stdout and "step" not in result.stdout.lower()
        assert not (tmp_path / "work").exists()


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    """A run SIGKILLed while it writes (synthesize's dataset, evaluate's report directory) leaves its temporary;
    the next write of the same output removes it, and nothing that is not a dead writer's temporary of it."""
    code = ("import sys, time\nfrom tf_dance import cli\nwith cli.atomic_output(sys.argv[1], sys.argv[2] == 'dir', "
            "'evaluate') as tmp:\n    print(tmp, flush=True)\n    time.sleep(120)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    left = []
    for out, kind in ((tmp_path / "dancer.npz", "file"), (tmp_path / "eval", "dir")):
        writer = subprocess.Popen([sys.executable, "-c", code, str(out), kind], stdout=subprocess.PIPE, text=True,
                                  env=env)
        left.append(writer.stdout.readline().strip())
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    assert all(os.path.exists(p) for p in left) and all(os.path.dirname(p) == str(tmp_path) for p in left)
    kept = [f".tmp-dancer-{os.getpid()}-abcd1234.npz",  # a live writer's
            ".tmp-dancer-notes.npz", ".tmp-eval-notes",  # not a temporary of ours
            f".tmp-dancer-2-{os.path.basename(left[0]).split('-')[2]}-abcd1234.npz"]  # dancer-2.npz's
    for name in kept:
        (tmp_path / name).write_text("keep")
    data.save_dataset(str(tmp_path / "dancer.npz"), np.zeros((2, 8, 8, 1), np.uint8), 24.0)
    with cli.atomic_output(str(tmp_path / "eval"), is_dir=True, owner="evaluate"):
        pass
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["dancer.npz", "eval"])
