"""The run directory both trainers share: damaged resume state ends in one error line naming what to
delete, and nothing in the workdir is overwritten (never a silent fresh start)."""

import os
import shutil

import numpy as np
import pytest

from tf_dance import autoencoder_training, cli, perlin, sequence_training

from conftest import ROOT


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    """(latents path, workdir, settings) of a finished tiny LSTM run with two checkpointed epochs."""
    base = tmp_path_factory.mktemp("lstm")
    path = str(base / "z.npy")
    np.save(path, perlin.perlin_vectors(300, seed=0, dim=10))
    settings = sequence_training.flagfile_settings(os.path.join(ROOT, "flags", "tiny_lstm.flags"))
    sequence_training.train_and_evaluate(path, str(base / "work"), str(base / "saved"), **settings)
    return path, str(base / "work"), settings


@pytest.fixture(scope="module")
def ae_run(tiny_dataset, tmp_path_factory):
    """(workdir, settings) of a finished 10-step tiny autoencoder run (checkpoints at 5 and 10)."""
    base = tmp_path_factory.mktemp("ae")
    settings = dict(autoencoder_training.flagfile_settings(os.path.join(ROOT, "flags", "tiny_autoencoder.flags")),
                    steps=10, checkpoint_every=5, verbose=0)
    autoencoder_training.train_and_evaluate(tiny_dataset, str(base / "work"), str(base / "saved"), **settings)
    return str(base / "work"), settings


def _garbage(path):
    with open(path, "w") as f:
        f.write("\x00garbage {{{ not a checkpoint")


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _data_file(workdir):
    import tensorflow as tf
    return tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")) + ".data-00000-of-00001"


DAMAGE = {  # file in the workdir -> how it is damaged -> the file the error must tell the user to delete
    "index": (lambda w: os.path.join("checkpoints", "checkpoint"), _garbage, "checkpoints"),
    "config": (lambda w: "config.json", _garbage, ""),
    "checkpoint_data": (_data_file, _truncate, "checkpoints"),
    "history": (lambda w: "history.json", _garbage, ""),
}


def _snapshot(workdir):
    found = {}
    for parent, _, names in os.walk(workdir):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, workdir)] = f.read()
    return found


def _damage(src, dst, kind):
    shutil.copytree(src, dst)
    target, spoil, delete = DAMAGE[kind]
    spoil(os.path.join(dst, target(dst)))
    return os.path.join(dst, delete).rstrip(os.sep)


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_lstm_damaged_resume_state_is_refused_and_kept(lstm_run, tmp_path, kind):
    path, workdir, settings = lstm_run
    work = str(tmp_path / "work")
    delete = _damage(workdir, work, kind)
    before = _snapshot(work)
    with pytest.raises(cli.UserError, match=f"delete {delete} ") as error:
        sequence_training.train_and_evaluate(path, work, str(tmp_path / "saved"), **dict(settings, epochs=3))
    assert "\n" not in str(error.value)
    assert _snapshot(work) == before
    assert not os.path.exists(tmp_path / "saved")


@pytest.mark.parametrize("kind", sorted(set(DAMAGE) - {"history"}))
def test_autoencoder_damaged_resume_state_is_refused_and_kept(ae_run, tiny_dataset, tmp_path, kind):
    workdir, settings = ae_run
    work = str(tmp_path / "work")
    delete = _damage(workdir, work, kind)
    before = _snapshot(work)
    with pytest.raises(cli.UserError, match=f"delete {delete} ") as error:
        autoencoder_training.train_and_evaluate(tiny_dataset, work, str(tmp_path / "saved"),
                                                **dict(settings, steps=15))
    assert "\n" not in str(error.value)
    assert _snapshot(work) == before
    assert not os.path.exists(tmp_path / "saved")


def test_cli_damaged_checkpoint_index_one_error_line(ae_run, tiny_dataset, tmp_path, run_module, fails_cleanly):
    workdir, _ = ae_run
    work = str(tmp_path / "work")
    _damage(workdir, work, "index")
    result = run_module("tf_dance.train_autoencoder", f"--flagfile={ROOT}/flags/tiny_autoencoder.flags",
                        f"--data={tiny_dataset}", f"--workdir={work}", f"--export_dir={tmp_path}/saved",
                        "--checkpoint_every=5", "--steps=15")
    fails_cleanly(result, f"delete {os.path.join(work, 'checkpoints')} ")


def test_a_resumed_run_drops_the_steps_a_killed_run_logged_after_its_checkpoint(tmp_path):
    """Steps logged after the last checkpoint are logged again by the resumed run: the old ones go first, so
    TensorBoard draws each step once."""
    import tensorflow as tf
    from tf_dance import training
    workdir = str(tmp_path)

    def logged():
        steps = []
        for path in tf.io.gfile.glob(os.path.join(training.tensorboard_dir(workdir), "events.out.tfevents*")):
            for record in tf.data.TFRecordDataset(path):
                event = tf.compat.v1.Event.FromString(record.numpy())
                steps += [event.step for _ in event.summary.value]
        return sorted(steps)

    killed = training.summary_writer(workdir, 0)
    for step in (1, 2, 3):
        training.write_summaries(killed, step, {"loss": float(step)})
    killed.close()
    resumed = training.summary_writer(workdir, 1)  # its checkpoint: step 1
    assert logged() == [1]
    for step in (2, 3, 4):
        training.write_summaries(resumed, step, {"loss": float(step)})
    resumed.close()
    assert logged() == [1, 2, 3, 4]
