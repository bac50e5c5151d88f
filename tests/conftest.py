"""Shared fixtures: a tiny synthetic dataset (arrays, .npz, .mp4) and a CLI runner."""

import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs whole scripts or several processes (demo, multi-worker, "
                                       "kill-and-resume); run after the fast tests, deselect with -m 'not slow'")
    config.pluginmanager.register(SlowLast(config), "slow_last")


class SlowLast:
    """The fast tests first, in their order, then the slow ones, so that a failure shows early; a line
    between the two says how long the fast ones took. Under pytest-xdist (setup.cfg runs two workers) each
    worker sorts its own collection, the controller hands tests out in that order and prints the line when a
    worker starts the first slow one."""

    def __init__(self, config):
        self.config, self.first_slow, self.start = config, None, time.monotonic()

    @staticmethod
    def _slow(item):
        return item.get_closest_marker("slow") is not None

    def pytest_collection_modifyitems(self, items):
        items.sort(key=self._slow)
        self.first_slow = next((item.nodeid for item in items if self._slow(item)), None)

    def pytest_report_collectionfinish(self, items):
        slow = sum(map(self._slow, items))
        return f"{len(items) - slow} fast tests first, then {slow} slow ones (-m slow)"

    def _boundary(self):
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")
            reporter.write_sep("-", f"fast tests done in {time.monotonic() - self.start:.0f} s; the slow tests "
                                    "(demo, multi-worker, kill-and-resume)")

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid):
        if nodeid == self.first_slow:
            self._boundary()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report):
        if getattr(report, "node", None) is not None and self.first_slow is None and "slow" in report.keywords:
            self.first_slow = report.nodeid
            self._boundary()


@pytest.fixture(scope="session")
def tiny_dancer():
    """`dict(frames uint8 [240, 54, 96, 1], poses, moves)`: 10 s of the dancer at 24 fps, seed 0."""
    from tf_dance import dancer
    return dancer.dancer(240, seed=0, fps=24.0)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_dancer, tmp_path_factory):
    """Path of `tiny_dancer` saved as a dataset .npz (fps 24, with poses and moves)."""
    from tf_dance import data
    path = str(tmp_path_factory.mktemp("tiny") / "dancer.npz")
    return data.save_dataset(path, tiny_dancer["frames"], 24.0, poses=tiny_dancer["poses"],
                             moves=tiny_dancer["moves"])


@pytest.fixture(scope="session")
def two_clips():
    """`dancer.footage(240, clips=2, seed=2)`: two clips of 115-125 frames at 24 fps, with a cut
    between a larger dancer and a much smaller, thinner one (mean silhouette ~360 vs ~110 px)."""
    from tf_dance import dancer
    return dancer.footage(240, 2, seed=2, fps=24.0)


@pytest.fixture(scope="session")
def two_clip_dataset(two_clips, tmp_path_factory):
    """Path of `two_clips` saved as a dataset .npz with `clips` and `clip_names`."""
    import numpy as np
    from tf_dance import data
    path = str(tmp_path_factory.mktemp("two_clips") / "clips.npz")
    return data.save_dataset(path, two_clips["frames"], 24.0, clips=two_clips["clips"],
                             clip_names=np.array(["big", "small"]), poses=two_clips["poses"],
                             moves=two_clips["moves"])


@pytest.fixture(scope="session")
def tiny_video(tiny_dancer, tmp_path_factory):
    """Path of `tiny_dancer` written as a 96x54 H.264 mp4 at 24 fps."""
    from tf_dance import video
    path = str(tmp_path_factory.mktemp("tiny") / "dancer.mp4")
    return video.write_video(path, tiny_dancer["frames"], 24.0)


@pytest.fixture(scope="session")
def run_module():
    """`run_module("tf_dance.x", "--flag=v", ...)` → CompletedProcess (text, run in the repo)."""
    def run(module, *args, timeout=300):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
        return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
    return run



@pytest.fixture(scope="session")
def fails_cleanly():
    """`fails_cleanly(result, message)`: exit code 1 and one `error: ...` line naming `message`, no traceback."""
    def check(result, message):
        assert result.returncode == 1, result.stderr[-2000:]
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last, result.stderr[-2000:]
    return check


@pytest.fixture(scope="session")
def kill_at_first_checkpoint():
    """`kill_at_first_checkpoint(process, workdir)`: SIGKILLs a training process (no clean-up, as a crash
    or an impatient user would stop it) as soon as it has written its first checkpoint."""
    def kill(process, workdir, timeout=120):
        try:
            deadline = time.time() + timeout
            while not os.path.exists(os.path.join(workdir, "checkpoints", "checkpoint")) and time.time() < deadline:
                assert process.poll() is None, "training ended before it could be killed"
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    return kill



@pytest.fixture
def interrupt():
    """`interrupt(process, ready)`: once `ready()` holds, sends the process SIGINT (Ctrl-C); returns the
    (stdout, stderr) it printed until it ended. A test run started in the background of a shell without job
    control ignores SIGINT, and so would the processes it starts (Python then installs no Ctrl-C handler): for
    the test, SIGINT gets Python's own handler, which a started process inherits as the default."""
    def stop(process, ready=lambda: True, timeout=120):
        try:
            deadline = time.time() + timeout
            while not ready() and time.time() < deadline:
                assert process.poll() is None, "the process ended before it could be interrupted"
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            return process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield stop
    signal.signal(signal.SIGINT, previous)


# The tiny exported models most tests share (`tiny_saved_models`): their latent size and rollout recipe (the
# signatures' inputs, and sampling controls baked into the export, the last 2 dims as a "stage box").
TINY_DIM = 8
TINY_RECIPE = {"temperature": 0.7, "noise": 0.2, "width": 0.5, "smoothing": 0.3, "box_dims": 2, "box_width": 0.0,
               "box_smoothing": 0.6, "coherence": 0.5, "beat_guidance": 0.0, "box_in_picture": False}


@pytest.fixture(scope="session")
def tiny_saved_models(tmp_path_factory, export_tiny_models):
    """One saved_models root for the whole test run (read it, copy it to change it): an untrained tiny encoder
    and decoder of one training and a mixture-head LSTM that records `TINY_RECIPE`, `TINY_DIM`-d latents."""
    return export_tiny_models(str(tmp_path_factory.mktemp("saved_models")), TINY_DIM, TINY_RECIPE)


@pytest.fixture(scope="session")
def export_tiny_models():
    """`export_tiny_models(root, dim, recipe, num_layers=1)`: untrained tiny encoder, decoder and mixture-head
    LSTM exported under `root` the way the training scripts export them (one autoencoder training record);
    returns `root`."""
    def export(root, dim, recipe, num_layers=1):
        import keras
        import numpy as np
        from tf_dance import autoencoder, cli, rollout, sequence_model
        keras.utils.set_random_seed(0)
        encoder = autoencoder.build_encoder(54, 96, 1, [2, 2, 2, 2], latent_dim=dim)
        decoder = autoencoder.build_decoder(54, 96, 1, [2, 2, 2, 2], latent_dim=dim)
        record = autoencoder.training_record()
        cli.export_version(root, "encoder", lambda d: autoencoder.export_encoder(encoder, d, record))
        cli.export_version(root, "decoder", lambda d: autoencoder.export_decoder(decoder, d, record))
        lstm = sequence_model.build_model("lstm", dim, np.zeros(dim, np.float32), np.ones(dim, np.float32),
                                          batch_size=1, units=8, num_layers=num_layers, head="mdn", mixtures=2)
        rollout.export(lstm, root, "dance_lstm", recipe=recipe)
        return root
    return export


def small_sequence_model(kind="lstm", head="mse", batch=2, num_layers=2, seed=0, dim=5):
    """A small untrained sequence model (`dim`-d) with non-trivial standardisation and weights big enough to
    matter: the sequence model's and the rollout's tests."""
    import keras
    import numpy as np
    from tf_dance import sequence_model
    rng = np.random.default_rng(seed)
    mean, std = rng.normal(size=dim).astype(np.float32), rng.uniform(0.5, 2, dim).astype(np.float32)
    keras.utils.set_random_seed(seed)
    return sequence_model.build_model(kind, dim, mean, std, batch_size=batch, units=8, num_layers=num_layers,
                                      fnn_hidden=8, head=head, mixtures=3, init="keras", seed=seed)


def dance_latents(frames, seed, dim, fps=24.0):
    """Latent-like vectors `[frames, dim]` of the procedural dancer: its move parameters through a fixed
    random tanh layer (the measures' and the evaluation's tests)."""
    import numpy as np
    from tf_dance import dancer
    params, _ = dancer.choreography(frames, seed=seed, fps=fps)
    rng = np.random.default_rng(123)
    weights = rng.normal(size=(params.shape[1], dim)) * 3.0 / np.sqrt(params.shape[1])
    return np.tanh(params @ weights + 0.3 * rng.normal(size=dim)).astype(np.float32)
