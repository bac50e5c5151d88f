"""Both trainers under tf.distribute without a cluster: two logical CPU devices (mirrored) and two
localhost worker processes (multi_worker) train exactly what one device trains on the same global
batch; a worker killed mid-run resumes; sharded datasets stream; bad settings fail in one line."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tf_dance import autoencoder_training, cli, data, perlin, savedmodels, sequence_training, training
from tf_dance import dancer as dancer_lib

from conftest import ROOT

AE = dict(steps=6, checkpoint_every=3, verbose=0)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))


def _ae_settings(**extra):
    return dict(autoencoder_training.flagfile_settings(os.path.join(ROOT, "flags", "tiny_autoencoder.flags")),
                **{**AE, **extra})


def _lstm_settings(**extra):
    return dict(sequence_training.flagfile_settings(os.path.join(ROOT, "flags", "tiny_lstm.flags")), **extra)


@pytest.fixture(scope="session")  # shared with the slow tests, which run last
def small_data(tmp_path_factory):
    """(dataset .npz of 120 dancer frames, latents .npy of 300 Perlin vectors)."""
    base = tmp_path_factory.mktemp("data")
    dancer = dancer_lib.dancer(120, seed=0, fps=24.0)
    latents = str(base / "z.npy")
    np.save(latents, perlin.perlin_vectors(300, seed=0, dim=10))
    return data.save_dataset(str(base / "d.npz"), dancer["frames"], 24.0), latents


def _weights(workdir, name):
    import keras
    from tf_dance import autoencoder  # noqa: F401 (registers the custom layer)
    return keras.models.load_model(os.path.join(workdir, f"{name}.keras")).get_weights()


def _assert_same_weights(a, b):
    for name in ("encoder", "decoder"):
        for x, y in zip(_weights(a, name), _weights(b, name)):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=2e-5)


# Each trainer in its own process: two logical devices must be set before TensorFlow starts, and
# two MirroredStrategy instances in one process would reuse each other's collective keys.
_MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tf_dance import autoencoder_training, sequence_training
trainer, path, out, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
lib = autoencoder_training if trainer == "ae" else sequence_training
result = lib.train_and_evaluate(path, out + "/work", out + "/models", distribute="mirrored", **settings)
with open(out + "/result.json", "w") as f:
    json.dump(result, f)
"""


def _mirrored(trainer, path, out, settings):
    os.makedirs(out, exist_ok=True)
    r = subprocess.run([sys.executable, "-c", _MIRRORED, trainer, path, str(out), json.dumps(settings)],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(out / "result.json") as f:
        return json.load(f)


@pytest.mark.slow
def test_mirrored_two_devices_match_one_device(small_data, tmp_path):
    frames, latents = small_data
    one = autoencoder_training.train_and_evaluate(frames, str(tmp_path / "one"), str(tmp_path / "m1"),
                                                  **_ae_settings())
    two = _mirrored("ae", frames, tmp_path, _ae_settings())
    assert (one["metrics"]["replicas"], two["metrics"]["replicas"]) == (1, 2)
    _assert_same_weights(str(tmp_path / "one"), str(tmp_path / "work"))
    assert two["metrics"]["iou"] == pytest.approx(one["metrics"]["iou"], abs=1e-3)

    # noise too: replica r gets its slice of the global noise; batch 2 is one stream per replica, whose static
    # batch of 1 the noise must keep (the fused LSTM's loop needs it)
    settings = _lstm_settings(input_noise=0.1, batch_size=2)
    one = sequence_training.train_and_evaluate(latents, str(tmp_path / "lstm1"), str(tmp_path / "s1"), **settings)
    two = _mirrored("lstm", latents, tmp_path / "lstm2", settings)
    np.testing.assert_allclose([h["train_loss"] for h in two["history"]], [h["train_loss"] for h in one["history"]],
                               rtol=1e-4)
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4)
    assert two["export_dir"].endswith(os.path.join("dance_lstm", "1"))


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _workers(module, args, n=2):
    """`n` localhost processes of `module` under distribute=multi_worker, each with its own TF_CONFIG."""
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(n)]}
    return [subprocess.Popen(
        [sys.executable, "-m", module, *args, "--distribute=multi_worker"], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
        for i in range(n)]


def _finish(workers, timeout=400):
    outputs = [w.communicate(timeout=timeout)[0] for w in workers]
    for w, out in zip(workers, outputs):
        assert w.returncode == 0, out[-3000:]
    return outputs


@pytest.mark.slow
def test_multi_worker_autoencoder_resumes_after_a_worker_is_killed(small_data, tmp_path):
    """Two workers; one is SIGKILLed after the first checkpoint (the other is then stopped too, as a
    job scheduler would); the job restarted with the same flags resumes there, both workers finish,
    the chief exports once, and the model equals a single-process run on the same global batch."""
    frames, _ = small_data
    work, models = tmp_path / "work", tmp_path / "models"
    args = [f"--flagfile={ROOT}/flags/tiny_autoencoder.flags", f"--data={frames}", f"--workdir={work}",
            f"--export_dir={models}", "--checkpoint_every=3"]
    workers = _workers("tf_dance.train_autoencoder", args + ["--steps=100000"])
    try:
        deadline = time.time() + 300
        while not os.path.exists(work / "checkpoints" / "checkpoint") and time.time() < deadline:
            assert all(w.poll() is None for w in workers), "a worker ended before it could be killed"
            time.sleep(0.05)
    finally:
        workers[1].send_signal(signal.SIGKILL)
        time.sleep(1)
        workers[0].send_signal(signal.SIGKILL)
        for w in workers:
            w.communicate()
    assert not os.path.exists(models)
    done = int(training.tf.train.latest_checkpoint(str(work / "checkpoints")).rsplit("-", 1)[1])
    target = done + 3
    chief, other = _finish(_workers("tf_dance.train_autoencoder", args + [f"--steps={target}"]))
    assert f"Resuming {work} at step {done} of {target}" in chief and f"at step {done} of {target}" in other
    assert "chief evaluates and exports" in other and "held-out IoU" in chief
    assert os.listdir(models / "encoder") == ["1"] and os.listdir(models / "decoder") == ["1"]
    with open(work / "eval.json") as f:
        assert json.load(f)["metrics"]["steps"] == target
    assert not [n for n in os.listdir(work) if n.startswith(".tmp")]
    autoencoder_training.train_and_evaluate(frames, str(tmp_path / "single"), str(tmp_path / "m1"),
                                            **_ae_settings(steps=target))
    _assert_same_weights(str(work), str(tmp_path / "single"))


@pytest.mark.slow
def test_multi_worker_lstm_matches_one_process(small_data, tmp_path):
    _, latents = small_data
    args = [f"--flagfile={ROOT}/flags/tiny_lstm.flags", f"--latents={latents}", f"--workdir={tmp_path}/work",
            f"--export_dir={tmp_path}/saved"]
    chief, other = _finish(_workers("tf_dance.train_lstm", args))
    assert "Done: 2 epochs" in chief and "chief exports" in other
    assert savedmodels.versions(str(tmp_path / "saved" / "dance_lstm")) == [1]
    with open(tmp_path / "work" / "history.json") as f:
        history = json.load(f)
    one = sequence_training.train_and_evaluate(latents, str(tmp_path / "one"), str(tmp_path / "s1"),
                                               **_lstm_settings())
    np.testing.assert_allclose([h["train_loss"] for h in history], [h["train_loss"] for h in one["history"]],
                               rtol=1e-4)


def _shards(directory, sizes, shape=(54, 96, 1)):
    os.makedirs(directory, exist_ok=True)
    for i, n in enumerate(sizes):
        frames = dancer_lib.dancer(n, seed=i, fps=24.0)["frames"] if shape == (54, 96, 1) else \
            np.zeros((n, *shape), np.uint8)
        data.save_dataset(os.path.join(directory, f"part-{i:03d}.npz"), frames, 24.0)
    return str(directory)


def test_sharded_dataset_streams_and_resumes(tmp_path):
    shards = _shards(tmp_path / "shards", [50, 40, 30])
    assert data.dataset_paths(shards) == data.dataset_paths(str(tmp_path / "shards" / "part-*.npz"))
    assert [data.frames_shape(p) for p in data.dataset_paths(shards)] == [(50, 54, 96, 1), (40, 54, 96, 1),
                                                                          (30, 54, 96, 1)]
    source = autoencoder_training.Shards(data.dataset_paths(shards), autoencoder_training.check_config(_ae_settings()))
    assert source.train_frames == 45 + 36 + 27 and len(source.eval_frames) == 5 + 4 + 3

    class Context:  # what tf.distribute hands an input function: here worker 1 of 2, one replica each
        num_replicas_in_sync, num_input_pipelines, input_pipeline_id = 2, 2, 1

    batches = [x.numpy() for x, _ in source.batches(Context, 4, 0).take(12)]
    frames, order = source._load(1, 0)  # worker 1 of 2 owns shard 1 only; its frames in the first pass's order
    worker1 = frames[order]
    np.testing.assert_array_equal(np.concatenate(batches[:9]), worker1[:36].astype(np.float32) / 255)
    resumed = [x.numpy() for x, _ in source.batches(Context, 4, 5).take(4)]  # step 5: one replica read 5 batches
    np.testing.assert_array_equal(resumed, batches[5:9])

    result = autoencoder_training.train_and_evaluate(str(tmp_path / "shards" / "*.npz"), str(tmp_path / "work"),
                                                     str(tmp_path / "models"), **_ae_settings(steps=4))
    assert result["metrics"]["steps"] == 4 and result["metrics"]["train_frames"] == 108
    with pytest.raises(cli.UserError, match="other data"):  # the same workdir with another dataset
        autoencoder_training.train_and_evaluate(shards + "/part-00[01].npz", str(tmp_path / "work"),
                                                str(tmp_path / "models"), **_ae_settings(steps=6))

    _shards(tmp_path / "mixed", [5], shape=(48, 64, 1))
    _shards(tmp_path / "mixed2", [5])
    os.rename(tmp_path / "mixed2" / "part-000.npz", tmp_path / "mixed" / "part-001.npz")
    with pytest.raises(cli.UserError, match="one frame size"):
        autoencoder_training.train_and_evaluate(str(tmp_path / "mixed"), str(tmp_path / "w2"), str(tmp_path / "m2"),
                                                **_ae_settings())
    with pytest.raises(cli.UserError, match="no .npz shards"):
        data.dataset_paths(str(tmp_path / "work" / "tensorboard"))
    with pytest.raises(cli.UserError, match="no dataset files match"):
        data.dataset_paths(str(tmp_path / "nothing-*.npz"))


@pytest.mark.parametrize("tf_config,message", [
    (None, "needs TF_CONFIG"),
    ("{not json", "TF_CONFIG is not a JSON object"),
    ('{"cluster": {"worker": ["localhost:1"]}}', "TF_CONFIG is not a JSON object"),
    ('{"cluster": {"ps": ["a:1"], "worker": ["a:2"]}, "task": {"type": "worker", "index": 0}}', "only 'chief'"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "is not in its cluster"),
])
def test_bad_tf_config_is_refused(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(cli.UserError, match=message):
        training.strategy("multi_worker")


def test_cli_bad_distribution_one_error_line(small_data, tmp_path, run_module, fails_cleanly):
    frames, latents = small_data
    fails_cleanly(run_module("tf_dance.train_autoencoder", f"--data={frames}", "--distribute=spark"), "distribute")
    result = subprocess.run([sys.executable, "-m", "tf_dance.train_lstm", f"--latents={latents}",
                             f"--workdir={tmp_path}/w", "--distribute=multi_worker"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=dict(ENV, TF_CONFIG="[1, 2"))
    fails_cleanly(result, "TF_CONFIG is not a JSON object")
    assert not os.path.exists(tmp_path / "w")
