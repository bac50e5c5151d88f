"""What both trainers share: the run directory and its checkpoints, JSON records, TensorBoard scalars.

A run directory (`--workdir`) holds `config.json` (the settings a resumed run must keep),
`checkpoints/` (a `tf.train.CheckpointManager` of model + optimizer; the data position is derived
from the optimizer's step count) and the trainer's own records. Damaged resume state stops the
run with one error line that says what to delete: a silent fresh start would overwrite the
checkpoints of the run the user meant to continue.
"""

import json
import os
import shutil
import tempfile

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
        raise cli.UserError(f"{path} is damaged ({cli.first_line(e)}); delete {workdir} to start the run over, "
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
    is a `cli.UserError` naming what to delete. Under several workers every one restores from the
    chief's directory (so the workdir must be shared storage) and every one saves, as
    MultiWorkerMirroredStrategy requires, but only the chief keeps what it saved.
    """

    def __init__(self, workdir, checkpoint, chief=True, max_to_keep=2):
        self.workdir, self.chief = workdir, chief
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
        except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError, OSError) as e:
            raise self._damaged(f"checkpoint {latest} is damaged or from another model ({cli.first_line(e)})") from None
        return True

    def save(self, number):
        if self.chief:
            return self.manager.save(checkpoint_number=number)
        scratch = tempfile.mkdtemp(prefix=".tmp-worker-checkpoint-")
        try:
            self.checkpoint.write(os.path.join(scratch, "ckpt"))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return None


def tensorboard_dir(workdir):
    """Where both trainers write their TensorBoard logs: `tensorboard --logdir <workdir>/tensorboard`."""
    return os.path.join(workdir, "tensorboard")


def summary_writer(workdir, resumed_at):
    """The TensorBoard writer of a run that starts (or resumes) at step `resumed_at`. A killed run may have
    logged steps after its last checkpoint; the resumed run logs them again, so the earlier ones are dropped
    from the event files first (TensorBoard would draw both)."""
    for path in tf.io.gfile.glob(os.path.join(tensorboard_dir(workdir), "events.out.tfevents*")):
        records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
        kept = [r for r in records if tf.compat.v1.Event.FromString(r).step <= resumed_at]
        if len(kept) < len(records):
            with cli.atomic_output(path) as tmp, tf.io.TFRecordWriter(tmp) as out:
                for record in kept:
                    out.write(record)
    return tf.summary.create_file_writer(tensorboard_dir(workdir))


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


# ---- tf.distribute ----

DISTRIBUTE = ("none", "mirrored", "multi_worker")
DISTRIBUTE_HELP = ("none: one device; mirrored: every local device (MirroredStrategy); multi_worker: several "
                   "processes or machines (MultiWorkerMirroredStrategy), the cluster read from TF_CONFIG. The "
                   "global batch is split evenly across the replicas.")


def strategy(kind):
    """The `tf.distribute` strategy for a `distribute` setting; a bad TF_CONFIG is a `cli.UserError`.

    Create it before any other TensorFlow work in the process: MultiWorkerMirroredStrategy has to
    configure the collective ops at start-up.
    """
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind != "multi_worker":
        raise cli.UserError(f"distribute must be one of {list(DISTRIBUTE)}, got {kind!r}")
    _check_tf_config(os.environ.get("TF_CONFIG"))
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as e:
        raise cli.UserError(f"cannot start the multi-worker strategy ({cli.first_line(e)}); run each worker in a fresh "
                            "process with its TF_CONFIG") from None


def _check_tf_config(text):
    """TF_CONFIG must name a cluster of workers (and optionally one chief) and this process's task in it."""
    if not text:
        raise cli.UserError("distribute=multi_worker needs TF_CONFIG, e.g. "
                            '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                            '"task": {"type": "worker", "index": 0}}')
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        kind, index = task["type"], task["index"]
    except (ValueError, TypeError, KeyError) as e:
        raise cli.UserError(f"TF_CONFIG is not a JSON object with 'cluster' and 'task' "
                            f"{{'type', 'index'}} ({type(e).__name__}: {e})") from None
    if not isinstance(cluster, dict) or not cluster.get("worker") and not cluster.get("chief"):
        raise cli.UserError(f"TF_CONFIG's cluster must list 'worker' addresses, got {cluster!r}")
    if set(cluster) - {"chief", "worker"}:
        raise cli.UserError(f"TF_CONFIG's cluster may hold only 'chief' and 'worker' tasks, got {sorted(cluster)}")
    for name, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise cli.UserError(f"TF_CONFIG's cluster['{name}'] must be a list of 'host:port' strings, "
                                f"got {addresses!r}")
    if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise cli.UserError(f"TF_CONFIG's task {task!r} is not in its cluster {cluster!r}")


def is_chief(strategy):
    """The process that writes checkpoints, logs, records and exports: the `chief` task, else worker 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def replicas(strategy, global_batch, what="batch_size"):
    """Examples per replica; the global batch must split evenly."""
    n = strategy.num_replicas_in_sync
    if global_batch % n:
        raise cli.UserError(f"{what} {global_batch} does not split evenly across {n} replicas")
    return global_batch // n


def replica_slices(dataset, context, global_batch):
    """A dataset of global batches -> the batches of this input pipeline's replicas, in replica order.

    Every pipeline (one per worker) walks the same global batches and keeps its replicas' slices,
    so N replicas see exactly the batch one replica would.
    """
    per = global_batch // context.num_replicas_in_sync
    local = context.num_replicas_in_sync // context.num_input_pipelines
    first = context.input_pipeline_id * local * per

    def mine(*batch):
        return tuple(tf.reshape(t[first:first + local * per], [local, per, *t.shape[1:]]) for t in batch)

    return dataset.map(mine).unbatch()
