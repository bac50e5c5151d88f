"""What both trainers share: the run directory and its checkpoints, JSON records, TensorBoard scalars.

A run directory (`--workdir`) holds `config.json` (the settings a resumed run must keep),
`checkpoints/` (a `tf.train.CheckpointManager` of model + optimizer; the data position is derived
from the optimizer's step count) and the trainer's own records. Damaged resume state stops the
run with one error line that says what to delete: a silent fresh start would overwrite the
checkpoints of the run the user meant to continue.
"""

import json
import os

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tf_dance import cli


def write_json(path, value):
    with cli.atomic_output(path) as tmp, open(tmp, "w") as f:
        json.dump(value, f, indent=2)


def read_json(path, default, workdir):
    """`path`'s JSON, or `default` when there is no such file; a damaged file is a `cli.UserError`."""
    if not os.path.exists(path):
        return default
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise cli.UserError(f"{path} is damaged ({_short(e)}); delete {workdir} to start the run over, "
                            "or use another --workdir") from None


def claim_workdir(workdir, settings, data, write=True):
    """Records `settings` (those a resumed run must keep) and `data` (a fingerprint of the training
    data) in `<workdir>/config.json`, or, when the workdir holds checkpoints, checks they match."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise cli.UserError(f"--workdir {workdir} is a file, not a directory")
    mine = {"settings": settings, "data": data}
    theirs = read_json(path, None, workdir)
    if theirs is not None and os.path.isdir(os.path.join(workdir, "checkpoints")):
        if not isinstance(theirs, dict) or not isinstance(theirs.get("settings"), dict):
            raise cli.UserError(f"{path} is damaged (not a settings record); delete {workdir} to start the run "
                                "over, or use another --workdir")
        recorded = theirs.get("data", theirs.get("latents"))  # "latents": older LSTM runs
        if recorded != data:
            raise cli.UserError(f"{workdir} holds a run trained on other data ({recorded} -> {data}); "
                                "use another --workdir")
        changed = sorted(k for k in settings if theirs["settings"].get(k) != settings[k])
        if changed:
            diffs = ", ".join(f"{k}: {theirs['settings'].get(k)!r} -> {settings[k]!r}" for k in changed)
            raise cli.UserError(f"{workdir} holds a run with other settings ({diffs}); resume it with the same "
                                "settings or use another --workdir")
    if write:
        os.makedirs(workdir, exist_ok=True)
        write_json(path, mine)


class Checkpoints:
    """`tf.train.CheckpointManager` over `<workdir>/checkpoints`, keeping the last two.

    `restore()` loads the latest checkpoint (True) or finds none (False); anything it cannot read
    is a `cli.UserError` naming what to delete.
    """

    def __init__(self, workdir, checkpoint, max_to_keep=2):
        self.workdir = workdir
        self.directory = os.path.join(workdir, "checkpoints")
        self.checkpoint = checkpoint
        self.manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=max_to_keep)

    def _damaged(self, what):
        return cli.UserError(f"{what}; delete {self.directory} to start the run over (or use another --workdir)")

    def restore(self):
        index = os.path.join(self.directory, "checkpoint")
        latest = self.manager.latest_checkpoint
        if latest is None:
            if os.path.exists(index):  # TensorFlow reads an unparsable index as "no checkpoint"
                raise self._damaged(f"the checkpoint index {index} is damaged")
            return False
        if not tf.io.gfile.exists(latest + ".index"):
            raise self._damaged(f"the checkpoint index {index} names a missing checkpoint {latest}")
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError) as e:
            raise self._damaged(f"checkpoint {latest} is damaged or from another model ({_short(e)})") from None
        return True

    def save(self, number):
        return self.manager.save(checkpoint_number=number)


def _short(error):
    lines = str(getattr(error, "message", None) or error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


# Summaries via the core `tf.summary.write` op plus the plugin metadata TensorBoard reads:
# `tf.summary.scalar`/`image` and `keras.callbacks.TensorBoard` need the tensorboard package,
# which TF 2.21 no longer installs and tf_dance does not depend on.
def _metadata(plugin):
    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin))


def write_summaries(writer, step, scalars=None, images=None):
    """Scalars (name -> number; None skipped) and images (name -> float [N, H, W, C] in [0, 1]) at `step`."""
    with writer.as_default(step=step):
        for name, value in (scalars or {}).items():
            if value is not None:
                tf.summary.write(name, tf.cast(value, tf.float32), metadata=_metadata("scalars"))
        for name, batch in (images or {}).items():
            pngs = [tf.io.encode_png(tf.cast(tf.round(tf.clip_by_value(b, 0, 1) * 255), tf.uint8)) for b in batch]
            size = [tf.as_string(batch.shape[2]), tf.as_string(batch.shape[1])]
            tf.summary.write(name, tf.stack(size + pngs), metadata=_metadata("images"))
    writer.flush()
