"""Training the autoencoder (paper sections 3.1 and 3.6): the library behind `train_autoencoder`.

    result = train_and_evaluate("runs/dancer.npz", "runs/ae", "saved_models", steps=3000, batch_size=64)

Adam with a piecewise-constant learning rate, random batches from tf.data (optionally mirrored,
shifted and rescaled, for small footage), a held-out split of whole stretches inside each clip
(neighbouring frames are near-duplicates, so single held-out frames would flatter the model). The
workdir holds TensorBoard logs (`<workdir>/tensorboard`, with reconstruction images), periodic
checkpoints of model + optimizer and, at the end, `encoder.keras` / `decoder.keras` for
fine-tuning, `eval.json` and `reconstructions.png` (the paper's Figure 4).
A killed run started again with the same flags resumes from its last checkpoint and data
position and stops at the same step count. `distribute` trains on several devices or workers
(`training.strategy`); a dataset may be a directory or glob of `.npz` shards, streamed (`Shards`).
"""

import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tf_dance import autoencoder, cli, data, stage, training
from tf_dance import video as video_lib
from tf_dance import config as config_lib
from tf_dance import metrics as metrics_lib
from tf_dance.config import Setting

def _increasing(values):
    return all(b > 0 for b in values) and list(values) == sorted(set(values))


SETTINGS = {
    "steps": Setting(150_000, "Total optimizer steps (batches) to train for.", low=1),
    "batch_size": Setting(200, "Frames per batch (the paper: 200).", low=1),
    "learning_rates": Setting([1e-3, 1e-4], "Adam learning rate for each stretch between --lr_boundaries (one "
                              "more than boundaries).", item=float, check=lambda v: bool(v) and min(v) > 0,
                              check_help="must be one or more positive numbers"),
    "lr_boundaries": Setting([10_000], "Steps at which the learning rate moves to the next of --learning_rates.",
                             item=int, check=_increasing, check_help="must be increasing positive step numbers"),
    "filters": Setting([32, 32, 32, 32], "Convolution filters of the 4 levels, from full resolution to the 4x6 "
                       "bottleneck; the last is also the depth of the decoder's dense 4x6xF start (the paper: 32).",
                       item=int, check=lambda v: len(v) == autoencoder.LEVELS and min(v) > 0,
                       check_help=f"must be {autoencoder.LEVELS} positive integers, one per level"),
    "latent_dim": Setting(128, "Size of the latent vector (the paper: 128).", low=1),
    "loss": Setting("xent", "xent: sigmoid cross-entropy on the logits (the TF1 code the paper adapted); "
                    "mse: squared error of the sigmoid output.", choices=tuple(sorted(autoencoder.LOSSES))),
    "val_fraction": Setting(0.1, "Fraction of frames held out (in contiguous stretches) for validation and "
                            "evaluation; 0 evaluates on the training frames.", low=0.0, high=1.0, high_open=True),
    "code_activation": Setting("linear", "Activation of the dense 128-d code (the encoder's last layer): linear "
                               "(the port's reading; the paper names none) or relu (the first author's TF1 "
                               "autoencoder: no code component is ever negative). The decoder's dense expansion "
                               "is ReLU in both readings.", choices=autoencoder.CODE_ACTIVATIONS),
    "dense_init": Setting("keras", "Initialisation of the two dense layers (code and expansion): keras (Glorot "
                          "uniform, zero bias) or tf1 (the first author's TF1 code: truncated normal with "
                          "stddev 0.1, biases 0.1). Convolutions keep Keras's defaults.",
                          choices=autoencoder.DENSE_INITS),
    "extra_conv": Setting(False, "One more 3x3 ReLU convolution at full resolution before the decoder's logits "
                          "(the first author's code; the paper's tutorial source has none)."),
    "augment_flip": Setting(False, "Augment training frames: mirror each left-right with probability 1/2 "
                            "(held-out frames are never augmented)."),
    "augment_shift": Setting(0.0, "Augment training frames: move each by a random whole number of pixels, up to "
                             "this fraction of the width (horizontally) and height (vertically); 0 = off.",
                             low=0.0, high=0.5),
    "augment_scale": Setting(0.0, "Augment training frames: scale each about the frame's centre by a random "
                             "factor in [1 - s, 1 + s]; 0 = off.", low=0.0, high=0.5),
    "seed": Setting(0, "Seed for weights, the held-out split and batch order."),
    "checkpoint_every": Setting(1000, "Steps between checkpoints, validation and TensorBoard logs.", low=1),
    "jit_compile": Setting(False, "Compile the train step with XLA. On CPU XLA's convolutions are slower than "
                           "TensorFlow's oneDNN ones (see BENCHMARKS.md), so off by default."),
    "precision": Setting("float32", "float32; mixed_bfloat16 (bfloat16 compute, float32 weights: ~2x faster on "
                         "CPUs with native bfloat16, very slow on others); auto: mixed_bfloat16 only where the CPU "
                         "has it. Exported models compute in float32 (the decoder also has a decode_bfloat16 "
                         "signature, docs/serving.md).",
                         choices=("float32", "mixed_bfloat16", "auto")),
    "stage": Setting(False, "Keep where the dancer is apart from the pose (tf_dance.stage): train on poses centred "
                     "at one height, export an encoder whose latent is the pose's code plus the silhouette's box "
                     "(3 more numbers) and a decoder that puts the pose back in its place. For footage whose "
                     "dancers travel and change size; off = the paper's autoencoder."),
    "eval_pairs": Setting(2000, "Random held-out frame pairs for the Figure 3 check (pixel vs. latent distance).",
                          low=10),
    "distribute": Setting("none", training.DISTRIBUTE_HELP, choices=training.DISTRIBUTE),
    "verbose": Setting("auto", "Progress: auto (a live bar on a terminal, a plain line every ~10 s otherwise), "
                       "0 (none), 1 (bar) or 2 (lines).", choices=("auto", 0, 1, 2, "0", "1", "2")),
}
# Settings that fix the model's shape or the data order; a resumed run must keep them.
_FIXED = ("filters", "latent_dim", "batch_size", "val_fraction", "seed", "code_activation", "dense_init", "extra_conv",
          "augment_flip", "augment_shift", "augment_scale", "stage")
_MAX_EVAL = 5000  # frames evaluated at the end (evenly spaced), to bound memory on long videos


def define_flags(flag_values):
    """One absl flag per setting, for the `train_autoencoder` script."""
    config_lib.define_flags({k: s for k, s in SETTINGS.items() if k != "verbose"}, flag_values)


def flagfile_settings(path):
    """The settings a `train_autoencoder` flagfile sets (tests, bench)."""
    return config_lib.flagfile_settings({k: s for k, s in SETTINGS.items() if k != "verbose"}, path,
                                        "train_autoencoder")


def check_config(config):
    """Fills defaults and validates; raises `cli.UserError` for unknown keys or bad values."""
    config = config_lib.resolve(SETTINGS, config, "autoencoder setting")
    if len(config["learning_rates"]) != len(config["lr_boundaries"]) + 1:
        raise cli.UserError(f"learning_rates needs one more value than lr_boundaries "
                            f"(got {len(config['learning_rates'])} and {len(config['lr_boundaries'])})")
    return config


def native_bfloat16():
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX); read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            cpu_flags = set(f.read().split())
    except OSError:
        return False
    return bool(cpu_flags & {"avx512_bf16", "amx_bf16"})


def split(n, val_fraction, seed, clips=None):
    """(train, held-out) frame indices; held-out frames come in ~10 contiguous stretches in all.

    `clips` (int [n], the clip of every frame; None = one clip): every clip holds out its share of
    frames, in stretches that lie inside it, so no held-out stretch runs across a cut and every
    clip is evaluated.
    """
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n_val == 0:
        n_val = 1
    if n_val >= n:
        raise cli.UserError(f"{n} frames are too few to hold out {val_fraction:.0%} and still train")
    if n_val == 0:
        return np.arange(n), np.arange(0)
    if clips is not None and np.shape(clips) != (n,):
        raise cli.UserError(f"the dataset's clips has shape {np.shape(clips)}, but there are {n} frames")
    bounds = [(0, n)] if clips is None else data.clip_bounds(clips)
    lengths = np.array([e - s for s, e in bounds])
    quota = lengths * n_val // n
    extra = np.argsort(-(lengths * n_val % n), kind="stable")[:n_val - quota.sum()]
    quota[extra] += 1
    block = max(1, n_val // 10)
    rng = np.random.default_rng(seed)
    held = np.zeros(n, bool)
    for (first, end), want in zip(bounds, quota):
        starts = np.arange(first, end, block)
        taken = 0
        for b in rng.permutation(len(starts)):
            if taken >= want:
                break
            stop = min(starts[b] + block, end, starts[b] + want - taken)
            held[starts[b]:stop] = True
            taken += stop - starts[b]
    return np.flatnonzero(~held), np.flatnonzero(held)


_AUGMENT_STREAM = 0xA06  # folded into (seed, step) so augmentation draws differ from the shuffle's


def train_batches(table, indices, batch_size, seed, start_step, flip=False, shift=0.0, scale=0.0):
    """Endless (x, x) float batches in an order fixed by `seed`, starting at batch `start_step`.

    Each pass over `indices` is a stateless shuffle keyed by (seed, pass), so a resumed run
    skips straight to where it stopped and sees the same batches an unbroken run would. The
    augmentation (`augment`) is keyed by (seed, step) for the same reason.
    """
    n = len(indices)
    first = start_step * batch_size
    order = tf.constant(indices, tf.int64)
    ds = tf.data.Dataset.range(first // n, 2**62).map(
        lambda e: tf.random.experimental.stateless_shuffle(order, seed=tf.stack([tf.constant(seed, tf.int64), e])))
    ds = ds.unbatch().skip(first % n).batch(batch_size, drop_remainder=True)
    if not (flip or shift or scale):
        return _to_pairs(ds, table)

    def load(step, i):
        key = tf.random.experimental.stateless_fold_in(tf.stack([tf.constant(seed, tf.int64), step]), _AUGMENT_STREAM)
        x = augment(tf.cast(tf.gather(table, i), tf.float32) / 255.0, key, flip, shift, scale)
        return x, x

    return ds.enumerate(start_step).map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def augment(frames, key, flip=False, shift=0.0, scale=0.0):
    """Randomly mirrored, shifted (whole pixels) and scaled copies of float frames [B, H, W, C].

    One projective-transform op per batch (no Keras layers, so nothing ends up in the exported
    models); the draws come from the stateless key `key` alone. Pixels moved in from outside the
    frame are black, like the ground of a silhouette.
    """
    b = tf.shape(frames)[0]
    h, w = frames.shape[1], frames.shape[2]
    draws = tf.random.stateless_uniform([4, b], seed=key)
    sign = tf.where(draws[0] < 0.5, -1.0, 1.0) if flip else tf.ones([b])
    s = 1.0 + scale * (2.0 * draws[1] - 1.0)
    tx = tf.round(shift * w * (2.0 * draws[2] - 1.0))
    ty = tf.round(shift * h * (2.0 * draws[3] - 1.0))
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    # Output pixel (x, y) reads input (cx + (sign * (x - cx) - tx) / s, cy + (y - cy - ty) / s).
    zeros = tf.zeros([b])
    transforms = tf.stack([sign / s, zeros, cx + (-sign * cx - tx) / s,
                           zeros, 1.0 / s, cy + (-cy - ty) / s, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=frames, transforms=transforms, output_shape=tf.constant([h, w]), fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")


def eval_batches(table, indices, batch_size=500):
    return _to_pairs(tf.data.Dataset.from_tensor_slices(indices.astype(np.int64)).batch(batch_size), table)


def _to_pairs(index_ds, table):
    """Index batches -> (x, x) float batches gathered from `table`, the uint8 frames as one tensor."""

    def load(i):
        x = tf.cast(tf.gather(table, i), tf.float32) / 255.0
        return x, x

    return index_ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _verbosity(verbose):
    """1: a live progress bar (the default on a terminal); 2: a plain line every ~10 s (in a log file or
    pipe); 0: none."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def _policy(precision):
    if precision == "auto":
        return "mixed_bfloat16" if native_bfloat16() else "float32"
    return precision


def _build_pair(shape, config, policy=None):
    """(encoder, decoder) with the settings' architecture and initialisation readings."""
    h, w, c = shape
    encoder = autoencoder.build_encoder(h, w, c, config["filters"], config["latent_dim"], dtype=policy,
                                        code_activation=config["code_activation"], dense_init=config["dense_init"])
    decoder = autoencoder.build_decoder(h, w, c, config["filters"], config["latent_dim"], dtype=policy,
                                        dense_init=config["dense_init"], extra_conv=config["extra_conv"])
    return encoder, decoder


def build(shape, config, policy="float32"):
    """(encoder, decoder, training model with its optimizer) for frames of `shape` = (H, W, C)."""
    encoder, decoder = _build_pair(shape, config, policy)
    model = autoencoder.build_autoencoder(encoder, decoder)
    schedule = config["learning_rates"][0]
    if config["lr_boundaries"]:
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(config["lr_boundaries"], config["learning_rates"])
    model.compile(optimizer=keras.optimizers.Adam(schedule))  # the optimizer only: `train_step` is the step
    return encoder, decoder, model


def train_and_evaluate(data_path, workdir, export_dir, **config):
    """Trains (or resumes) in `workdir`, evaluates on the held-out frames, exports both SavedModels.

    `data_path` is one `.npz` (loaded into memory) or a directory or glob of `.npz` shards (streamed,
    see `Shards`). Returns dict(metrics, encoder_dir, decoder_dir); under several workers only the
    chief evaluates and exports, and the others return None.
    """
    config = check_config(config)
    strategy = training.strategy(config["distribute"])
    chief = training.is_chief(strategy)
    per_replica = training.replicas(strategy, config["batch_size"])
    paths = data.dataset_paths(data_path)
    if len(paths) == 1:
        source = InMemory(paths[0], config)
    else:
        source = Shards(paths, config, load_eval=chief)
    training.claim_workdir(workdir, {k: config[k] for k in _FIXED}, source.fingerprint, write=chief)

    keras.utils.set_random_seed(config["seed"])
    policy = _policy(config["precision"])
    with strategy.scope():
        encoder, decoder, model = build(source.shape, config, policy)
        model.optimizer.build(model.trainable_variables)
    checkpoints = training.Checkpoints(workdir, tf.train.Checkpoint(model=model, optimizer=model.optimizer), chief)
    start = 0
    if checkpoints.restore():
        start = int(model.optimizer.iterations.numpy())
        print(f"Resuming {workdir} at step {start} of {config['steps']}", flush=True)

    train_seconds = 0.0
    if start < config["steps"]:
        t0 = time.perf_counter()
        _fit(model, config, strategy,
             strategy.distribute_datasets_from_function(lambda context: source.batches(context, per_replica, start)),
             source.val_batches() if chief else None, source.shown() if chief else None, checkpoints,
             workdir if chief else None)
        train_seconds = time.perf_counter() - t0
    done = int(model.optimizer.iterations.numpy())
    if not chief:
        return None

    encoder32, decoder32 = _as_float32(encoder, decoder, source.shape, config)
    if config["stage"]:
        encoder32, decoder32 = stage.staged_encoder(encoder32), stage.staged_decoder(decoder32)
    metrics = evaluate(encoder32, decoder32, source.eval_frames, config["seed"], config["eval_pairs"],
                       os.path.join(workdir, "reconstructions.png"))
    metrics.update(steps=done, held_out=source.held_out, eval_frames=int(len(source.eval_frames)),
                   train_frames=int(source.train_frames), precision=policy, loss=config["loss"],
                   train_seconds=round(train_seconds, 1), replicas=strategy.num_replicas_in_sync)
    if train_seconds:
        metrics["train_images_per_s"] = round((done - start) * config["batch_size"] / train_seconds, 1)
    for name, m in (("encoder", encoder32), ("decoder", decoder32)):
        with cli.atomic_output(os.path.join(workdir, f"{name}.keras")) as tmp:
            m.save(tmp)
    record = autoencoder.training_record()
    encoder_dir = cli.export_version(export_dir, "encoder", lambda d: autoencoder.export_encoder(encoder32, d, record))
    decoder_dir = cli.export_version(export_dir, "decoder", lambda d: autoencoder.export_decoder(decoder32, d, record))
    result = dict(metrics=metrics, encoder_dir=encoder_dir, decoder_dir=decoder_dir)
    training.write_json(os.path.join(workdir, "eval.json"),
                        {**result, "data": os.path.abspath(data_path), "config": config})
    return result


class InMemory:
    """One `.npz` held in memory: random batches over its training frames (`train_batches`), its
    held-out stretches for validation and evaluation."""

    def __init__(self, path, config):
        self.config = config
        self.frames, _, extras = data.load_dataset(path)
        self.train_idx, self.val_idx = split(len(self.frames), config["val_fraction"], config["seed"],
                                             extras.get("clips"))
        data.check_batch(config["batch_size"], len(self.train_idx), self.frames.shape[1:])
        eval_idx = self.val_idx if len(self.val_idx) else self.train_idx
        if len(eval_idx) > _MAX_EVAL:
            eval_idx = eval_idx[np.linspace(0, len(eval_idx) - 1, _MAX_EVAL).astype(int)]
        self.eval_frames = self.frames[eval_idx]
        # what the conv autoencoder sees: the frames, or with --stage their centred poses
        self.posed = stage.centre_frames(self.frames) if config["stage"] else self.frames
        self.shown_frames = self.posed[eval_idx[:: max(1, len(eval_idx) // 8)][:8]]
        self.shape, self.train_frames = self.frames.shape[1:], len(self.train_idx)
        self.held_out = bool(len(self.val_idx))
        self.fingerprint = {"frame_shape": list(self.shape), "frames": len(self.frames)}
        self.table = tf.constant(self.posed)

    def batches(self, context, per_replica, start):
        """This pipeline's replicas' slices of the global batches from step `start` on: every worker walks
        the same global batches, so any number of replicas trains on exactly what one would."""
        c = self.config
        return training.replica_slices(train_batches(self.table, self.train_idx, c["batch_size"], c["seed"], start,
                                                     c["augment_flip"], c["augment_shift"], c["augment_scale"]),
                                       context, c["batch_size"])

    def val_batches(self):
        return eval_batches(self.table, self.val_idx) if len(self.val_idx) else None

    def shown(self):
        return self.shown_frames


class Shards:
    """A dataset of many `.npz` shards, streamed: never more than a few shards in memory.

    Each worker reads its own shards (shard i goes to worker i mod workers); each pass over them
    visits the shards in a seeded order, interleaving `_OPEN_SHARDS` at a time, every shard's
    training frames in a seeded order. Each shard holds out its own stretches (`split` with seed
    + shard index); validation and the final evaluation use up to `_MAX_EVAL` of them, taken from
    at most 8 shards spread over the dataset. A resumed run skips whole passes without reading them.
    """

    def __init__(self, paths, config, load_eval=True):
        self.paths, self.config = paths, config
        unsupported = [k for k in ("stage", "augment_flip", "augment_shift", "augment_scale") if config[k]]
        if unsupported:
            raise cli.UserError(f"--{', --'.join(unsupported)} work on a single-file dataset, not on shards")
        shapes = [data.frames_shape(p) for p in paths]
        if len({s[1:] for s in shapes}) > 1:
            raise cli.UserError(f"the shards of a dataset must have one frame size, found "
                                f"{sorted({s[1:] for s in shapes})}")
        self.shape = shapes[0][1:]
        self.counts = [s[0] for s in shapes]
        self.train_counts = [len(self._split(n, i)[0]) for i, n in enumerate(self.counts)]
        self.train_frames = sum(self.train_counts)
        self.held_out = config["val_fraction"] > 0
        self.fingerprint = {"frame_shape": list(self.shape), "frames": sum(self.counts), "shards": len(paths)}
        self.eval_frames = self._eval_frames() if load_eval else None

    def _split(self, n, i):
        return split(n, self.config["val_fraction"], self.config["seed"] + i)

    def _eval_frames(self):
        picked = np.unique(np.linspace(0, len(self.paths) - 1, min(8, len(self.paths))).astype(int))
        per_shard = _MAX_EVAL // len(picked)
        chosen = []
        for i in picked:
            frames = data.load_dataset(self.paths[i])[0]
            train, held = self._split(len(frames), i)
            idx = held if len(held) else train
            chosen.append(frames[idx[np.linspace(0, len(idx) - 1, min(per_shard, len(idx))).astype(int)]])
        return np.concatenate(chosen)

    def _load(self, i, epoch):
        i, epoch = int(i), int(epoch)
        frames = data.load_dataset(self.paths[i])[0]
        if len(frames) != self.counts[i]:
            raise cli.UserError(f"{self.paths[i]} changed during training")
        train, _ = self._split(len(frames), i)
        return frames, np.random.default_rng([self.config["seed"], epoch, i]).permutation(train)

    def batches(self, context, per_replica, start):
        """Per-replica batches of this worker's shards from step `start` on."""
        mine = np.arange(len(self.paths))[context.input_pipeline_id::context.num_input_pipelines]
        if not len(mine):
            raise cli.UserError(f"{len(self.paths)} shards cannot feed {context.num_input_pipelines} workers; "
                                "give at least one shard per worker")
        per_pass = sum(self.train_counts[i] for i in mine)
        local = context.num_replicas_in_sync // context.num_input_pipelines
        first_pass, offset = divmod(start * local * per_replica, per_pass)
        seed = self.config["seed"]

        def shard(i, epoch):  # the shard once, read through its shuffled training indices (no shuffled copy)
            frames, order = tf.numpy_function(self._load, [i, epoch], (tf.uint8, tf.int64), stateful=False)
            frames.set_shape([None, *self.shape])
            order.set_shape([None])
            return tf.data.Dataset.from_tensor_slices(order).map(lambda j: tf.gather(frames, j))

        def one_pass(epoch):
            order = tf.random.experimental.stateless_shuffle(tf.constant(mine, tf.int64),
                                                             seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
            return tf.data.Dataset.from_tensor_slices(order).interleave(
                lambda i: shard(i, epoch), cycle_length=_OPEN_SHARDS, block_length=1)

        ds = tf.data.Dataset.range(first_pass, 2**62).flat_map(one_pass).skip(offset)
        return _to_pairs_from_frames(ds.batch(per_replica, drop_remainder=True))

    def val_batches(self):
        if not self.held_out:
            return None
        return tf.data.Dataset.from_tensor_slices(self.eval_frames).batch(500).map(_pair)

    def shown(self):
        return self.eval_frames[:: max(1, len(self.eval_frames) // 8)][:8]


_OPEN_SHARDS = 2  # each open shard is held in memory once (25,000 frames at 96x54: ~130 MB)


def _pair(frames):
    x = tf.cast(frames, tf.float32) / 255.0
    return x, x


def _to_pairs_from_frames(ds):
    return ds.map(_pair, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def train_step(model, config, strategy):
    """The training step: `step(iterator)` takes the next global batch, updates the weights and returns
    (loss, mean IoU) of the batch.

    A hand-written step under `strategy.run` rather than `model.fit`: Keras 3.15's `fit` fails
    under MultiWorkerMirroredStrategy (it cannot convert a PerReplica value), and one loop then
    serves every `distribute` setting. Each replica's loss is its frames' loss summed and divided by
    the global batch, and Keras's `apply_gradients` sums the replicas' gradients: the update is the
    gradient of the mean over the global batch, whatever the number of replicas.
    """
    optimizer, variables = model.optimizer, model.trainable_variables
    loss_fn, batch_size = autoencoder.LOSSES[config["loss"]], config["batch_size"]

    @tf.function(jit_compile=config["jit_compile"])
    def gradients(x, y):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)
            loss = tf.reduce_sum(loss_fn(y, logits)) / batch_size
        return loss, tape.gradient(loss, variables), _iou_sum(y, logits)

    def replica_step(x, y):
        loss, grads, iou = gradients(x, y)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, iou

    @tf.function
    def step(iterator):
        loss, iou = strategy.run(replica_step, args=next(iterator))
        return strategy.reduce("SUM", loss, None), strategy.reduce("SUM", iou, None) / batch_size

    return step


def _fit(model, config, strategy, batches, val_batches, shown, checkpoints, workdir):
    """Optimizer steps (`train_step`) from the model's step count up to exactly `steps`; every
    `checkpoint_every` steps (and at the end) a checkpoint and, on the chief (`workdir` set), validation and
    TensorBoard logs."""
    optimizer, loss_fn = model.optimizer, autoencoder.LOSSES[config["loss"]]
    step_fn = train_step(model, config, strategy)

    @tf.function
    def eval_step(x, y):
        logits = tf.cast(model(x, training=False), tf.float32)
        return tf.reduce_sum(loss_fn(y, logits)), _iou_sum(y, logits), tf.shape(x)[0]

    step = int(optimizer.iterations.numpy())
    writer = training.summary_writer(workdir, step) if workdir else None
    every, steps, verbose = config["checkpoint_every"], config["steps"], _verbosity(config["verbose"])
    batches = iter(batches)
    progress = cli.progress(steps, unit="step", enabled=bool(verbose), done=step, live=verbose == 1)
    while step < steps:
        length = min(every - step % every, steps - step)
        losses, ious = [], []
        for i in range(length):
            loss, iou = step_fn(batches)
            losses.append(float(loss))
            ious.append(float(iou))
            progress.update(step + i + 1, [("loss", losses[-1]), ("iou", ious[-1])])
        step = int(optimizer.iterations.numpy())
        if writer:
            logs = {"loss": np.mean(losses), "iou": np.mean(ious), "learning_rate": optimizer.learning_rate}
            if val_batches is not None:
                totals = np.sum([[float(v) for v in eval_step(x, y)] for x, y in val_batches], axis=0)
                logs.update(val_loss=totals[0] / totals[2], val_iou=totals[1] / totals[2])
                if verbose:
                    progress.write(f"step {step:,}: held-out loss {logs['val_loss']:.4g}, IoU {logs['val_iou']:.3f}")
            x = shown.astype(np.float32) / 255.0
            recon = tf.cast(tf.sigmoid(model(x, training=False)), tf.float32)
            training.write_summaries(writer, step, logs,
                                     {"held_out/original_over_reconstruction": tf.concat([x, recon], axis=1)})
        checkpoints.save(step)
    if writer:
        writer.close()


def _iou_sum(y, logits):
    return tf.reduce_sum(autoencoder.frame_iou(y >= 0.5, logits >= 0))


def _as_float32(encoder, decoder, shape, config):
    """Plain float32 copies for evaluation and export: they run on any CPU, bfloat16 or not, and hold
    ordinary variables, not a distribution strategy's."""
    enc, dec = _build_pair(shape, config)
    enc.set_weights(encoder.get_weights())
    dec.set_weights(decoder.get_weights())
    return enc, dec


def evaluate(encoder, decoder, frames, seed=0, pairs=2000, sheet_path=None, batch_size=500):
    """The paper's section 5.1 checks, as numbers: IoU and MSE of reconstructions (Figure 4) and the
    Spearman correlation of pixel distance with latent distance over random pairs (Figure 3).

    Works a batch at a time and keeps reconstructions as uint8, so that evaluating thousands of
    frames costs little memory beside a large streamed training run."""
    encode = tf.function(lambda x: encoder(x, training=False))
    decode = tf.function(lambda z: decoder(z, training=False))
    latents, recon, iou, inter, union, squared = [], [], [], 0, 0, 0.0
    for i in range(0, len(frames), batch_size):
        x = frames[i:i + batch_size].astype(np.float32) / 255.0
        z = encode(x)
        r = decode(z).numpy()
        latents.append(z.numpy())
        recon.append(np.round(np.clip(r, 0, 1) * 255).astype(np.uint8))
        iou.append(np.asarray(autoencoder.frame_iou(x >= 0.5, r >= 0.5)))
        inter += np.logical_and(x >= 0.5, r >= 0.5).sum()
        union += np.logical_or(x >= 0.5, r >= 0.5).sum()
        squared += float(np.sum((r - x) ** 2, dtype=np.float64))
    latents, recon, iou = np.concatenate(latents), np.concatenate(recon), np.concatenate(iou)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(frames), (2, pairs))
    keep = a != b
    a, b = a[keep], b[keep]
    pixel = np.abs(frames[a].astype(np.float32) - frames[b]).reshape(len(a), -1).mean(axis=1) / 255.0
    latent = np.linalg.norm(latents[a] - latents[b], axis=1)
    metrics = dict(iou=float(iou.mean()), iou_pooled=float(inter / max(1, union)), mse=squared / frames.size,
                   spearman_pixel_vs_latent=metrics_lib.spearman(pixel, latent) if len(a) > 2 else 0.0)
    if sheet_path:
        pick = np.linspace(0, len(frames) - 1, min(8, len(frames))).astype(int)
        labels = ["original"] + [""] * (len(pick) - 1) + ["reconstructed"] + [""] * (len(pick) - 1)
        video_lib.contact_sheet(sheet_path, np.concatenate([frames[pick], recon[pick]]), every=1, columns=len(pick),
                                scale=2, labels=labels, title=f"held-out frames: top row the original, bottom row "
                                f"its reconstruction (IoU {metrics['iou']:.3f})")
    return metrics
