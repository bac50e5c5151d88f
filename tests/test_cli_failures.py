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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    val = re.findall(r"  val (\S+)", result.stdout)
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
