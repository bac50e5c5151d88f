"""char-rnn-style training of the sequence models (paper sections 3.3-3.6): the library behind `train_lstm`.

    result = train_and_evaluate("latents.npy", "runs/lstm", "saved_models", units=256, epochs=20)

As in Karpathy's char-rnn: the sequence is split train/val (`train_frac`); the training part
is cut into `batch_size` contiguous parallel streams and each batch is the next `seq_length`
steps of every stream, with the LSTM state carried from one batch to the next and reset at
each epoch start. Latents from several clips (`data.load_latent_clips`) are split clip by clip
(each clip's tail validates) and no window or carried state crosses a cut: a stream's windows
restart at the first frame of the next clip, with the state reset there (`stream_layout`), unless
`across_cuts` plays the clips as one dance, in a new order every epoch (`epoch_windows`).
Gradients are clipped elementwise at `grad_clip` (char-rnn's clamp; Keras's
`clipvalue`) unless `clip=global_norm`; the learning rate decays by `lr_decay` after every epoch
from `lr_decay_after` on. Validation runs the whole validation part as one stream, its state
carried across it; the state is first warmed up on the `seq_length` training frames just before
it (from zero, the first predictions would be scored against an LSTM that has seen nothing).
The model exported is the epoch with the best validation loss (`--patience` stops early), with the
rollout recipe of the `rollout_*` settings, or with `calibrate_frames` the one `calibration` picks
for this trained model among candidates around it.

Every epoch is checkpointed under `<workdir>/checkpoints`; a run restarted with the same
settings resumes from the last finished epoch and stops at `epochs`. `<workdir>/history.json`
and TensorBoard logs (`<workdir>/tensorboard`) record the losses; the trained model is exported
as a versioned SavedModel (see `rollout.py`) and kept as `<workdir>/model.keras`, with
`<workdir>/trained.json` (its settings and what it learnt from), from which `export_run` (the
`calibrate` script) exports it again, with another recipe or calibration, without training.
"""

import dataclasses
import functools
import os
import statistics
import time
import zlib

import keras
import numpy as np
import tensorflow as tf

from tf_dance import calibration, cli, config, controls, data, musicality, rollout, savedmodels, sequence_model
from tf_dance import training
from tf_dance.config import Setting


# Defaults reproduce the paper's final model (2 x 600 units, batch 5, MSE) with char-rnn's schedule.
def _rollout_setting(name):
    """--rollout_<name>: a sampling control's default, bounds and help (`controls.CONTROLS`)."""
    c = controls.CONTROLS[name]
    if isinstance(c.default, bool):
        return Setting(c.default, c.help)
    return Setting(c.default, c.help, low=type(c.default)(0), high=c.high, high_open=c.high_open)


def _calibrate_setting(name):
    """--calibrate_<name>: the values of a sampling control the calibration tries, within its bounds."""
    c = controls.CONTROLS[name]
    return Setting([], f"{c.calibrate} values the calibration tries (empty = --rollout_{name} only).", item=float,
                   check=lambda v: all(controls.problem(name, x, 0) is None for x in v),
                   check_help=f"must be numbers in {controls.bounds(name)}")


SETTINGS = {
    "model": Setting("lstm", "lstm: the paper's stateful LSTM; fnn: its failed baseline (previous two frames "
                     "-> hidden -> next frame).", choices=sequence_model.MODELS),
    "head": Setting("mse", "mse: predict the next vector (the paper's); mdn: a Gaussian mixture over it, "
                    "sampled with the rollout temperature.", choices=sequence_model.HEADS),
    "mixtures": Setting(5, "Mixture components of the mdn head.", low=1),
    "num_layers": Setting(2, "Stacked LSTM layers.", low=1),
    "units": Setting(600, "Units per LSTM layer (the paper froze at 400 and danced at 600).", low=1),
    "fnn_hidden": Setting(128, "Hidden units of the fnn baseline (the paper's 128).", low=1),
    "init": Setting("charrnn", "Weight init: charrnn (uniform +-0.08, forget-gate bias 1) or keras "
                    "(Glorot/orthogonal, forget-gate bias 1).", choices=sequence_model.INITS),
    "batch_size": Setting(5, "Parallel contiguous streams per batch (the paper: 5; 50 froze).", low=1),
    "seq_length": Setting(50, "Time steps per batch (truncated backpropagation length).", low=1),
    "epochs": Setting(50, "Passes over the training streams; a resumed run stops here.", low=1),
    "learning_rate": Setting(2e-3, "Adam learning rate.", low=0.0, low_open=True),
    "lr_decay": Setting(0.97, "Learning-rate factor applied after each epoch from --lr_decay_after on.",
                        low=0.0, high=1.0, low_open=True),
    "lr_decay_after": Setting(10, "Epochs at the full learning rate before the decay starts.", low=0),
    "grad_clip": Setting(5.0, "Gradient clipping threshold (0 = none).", low=0.0),
    "clip": Setting("value", "value: clip every gradient element to +-grad_clip (char-rnn); "
                    "global_norm: rescale all gradients so their joint norm <= grad_clip.",
                    choices=("value", "global_norm")),
    "train_frac": Setting(0.95, "Leading fraction of the sequence used for training; the rest validates "
                          "(1 = no validation).", low=0.0, high=1.0, low_open=True),
    "normalize": Setting(True, "Standardise each latent dimension with the training mean/std (stored inside "
                         "the model; callers always pass raw latents)."),
    "ground_truth_steps": Setting(5, "Auto-conditioning: real inputs per cycle.", low=1),
    "condition_steps": Setting(0, "Auto-conditioning: steps per cycle fed the model's own previous output "
                               "(0 = teacher forcing, the paper's).", low=0),
    "input_noise": Setting(0.0, "Std of Gaussian noise added to training inputs, in normalised units.", low=0.0),
    "dropout": Setting(0.0, "char-rnn's dropout on every LSTM layer's output (between layers and before the head), "
                       "in training only; 0 = none (the paper's).", low=0.0, high=1.0, high_open=True),
    "patience": Setting(0, "Early stopping: stop after this many epochs without a better validation loss "
                        "(0 = off). The epoch with the best validation loss is exported either way.", low=0),
    "extra_latents": Setting([], "Extra latent files (e.g. encoded flipped clips), comma-separated: extra "
                             "training streams, each file (or each clip it records) a clip of its own; never "
                             "validated on.", item=str),
    "box_loss_weight": Setting(1.0, "Weight of the stage box's dimensions (the last --rollout_box_dims) in the "
                               "training loss, against 1 for every other dimension: 3 box numbers among 128 pose "
                               "numbers barely count, and the model learns to pull the box back to the middle of "
                               "the stage. Recorded in the export's config.", low=0.0, low_open=True),
    "box_residual": Setting(False, "The head predicts the stage box's change (the last --rollout_box_dims) from the "
                            "frame it reads, not where the box is: each component's box mean is the input's box plus "
                            "the predicted step, so a rollout's box is not pulled back to the middle. The model "
                            "carries the stage of its training frames (each box number's 1st-99th percentile), and "
                            "a rollout turns the box back at its walls (docs/sampling.md). The box then gets no "
                            "training input noise, no rollout noise when fed back, and its steps no coherence. "
                            "Recorded in the export's config."),
    "across_cuts": Setting(False, "Train on the clips as one dance: every epoch the streams play the training clips "
                           "end to end in a new random order (from --seed and the epoch), windows and carried state "
                           "running across the cuts, so the model learns that a dance can pass from one clip's moves "
                           "to another's. Off: each clip starts from a reset state, never seen to turn into another, "
                           "and a rollout that drifts into one clip's style may keep to it. Recorded in the export's "
                           "config."),
    **{f"rollout_{name}": _rollout_setting(name) for name in controls.CONTROLS},
    "calibrate_frames": Setting(0, "Calibrate the rollout recipe before the export (beyond the paper; "
                                "tf_dance/calibration.py): roll the trained model out twice for this many frames "
                                "with every combination of "
                                + "/".join(f"--calibrate_{name}" for name in controls.GRID)
                                + " over the --rollout_* recipe, judge "
                                "each by evaluate's goals and verdicts on its second half, and record the one that "
                                "falls short of their limits by the least (0 = off: the --rollout_* recipe as "
                                "given).", low=0, high=rollout.MAX_FRAMES // 2),
    **{f"calibrate_{name}": _calibrate_setting(name) for name in controls.GRID},
    "calibrate_decoder": Setting("", "The autoencoder's decoder (a SavedModel directory): the calibration then also "
                                 "judges on-screen motion and stage coverage from decoded frames; without it, only "
                                 "what the latents show."),
    "calibrate_fps": Setting(24.0, "Frames per second of the latents, for the calibration's one-second windows "
                             "(the demo passes its dataset's).", low=0.0, low_open=True),
    "music": Setting(False, "Condition the LSTM on the dataset's music (beyond the paper): each step also reads the "
                     "music features of the frame it predicts (`encode` saves them beside the latents of a dataset "
                     "with a soundtrack). The export then dances to a song: generate --audio."),
    "dim": Setting(0, "Required latent width (e.g. 128 for the encoder's latents); 0 = take it from the file.",
                   low=0),
    "seed": Setting(0, "Seed for initialisation and noise; same settings + seed -> same model.", low=0),
    "export_name": Setting("", "SavedModel name under the export dir (default dance_<model>)."),
    "jit_compile": Setting(True, "Compile the training step with XLA (about 2x faster on CPU)."),
    "distribute": Setting("none", training.DISTRIBUTE_HELP, choices=training.DISTRIBUTE),
}
# Settings that only change how a trained model is exported (its rollout recipe and its calibration):
# `export_run` may change them without training.
EXPORT_SETTINGS = {"export_name", *(k for k in SETTINGS if k.startswith(("rollout_", "calibrate_")))}
# Settings that may change when a run resumes (the rest must match the checkpointed run): the export settings
# and how the run is driven.
_RESUMABLE = {"epochs", "jit_compile", "patience", "distribute", *EXPORT_SETTINGS}
# Settings added later, with the value runs recorded before them trained with: left out of the workdir's claim
# at that value, so that those runs still resume.
_ADDED = {"box_loss_weight": 1.0, "box_residual": False, "across_cuts": False, "music": False}
BEST_WEIGHTS = "best_weights.npz"
# Fewest optimizer updates per LSTM epoch on footage (`lstm_sizing`): less data gets fewer parallel streams.
MIN_UPDATES_PER_EPOCH = 20
TRAINED = "trained.json"  # a finished run's settings and what it learnt, beside its model.keras (`export_run`)


def resolve_config(overrides):
    """Defaults + `overrides`, checked; raises `cli.UserError` on unknown names or bad values."""
    return config.resolve(SETTINGS, overrides)


def define_flags(flag_values):
    """Defines one absl flag per setting (help text, bounds, choices) on `flag_values`."""
    config.define_flags(SETTINGS, flag_values)


def flagfile_settings(path):
    """The settings a `train_lstm` flagfile sets (tests, bench); other flags raise `cli.UserError`."""
    return config.flagfile_settings(SETTINGS, path, "train_lstm")


@keras.saving.register_keras_serializable(package="tf_dance")
class EpochDecay(keras.optimizers.schedules.LearningRateSchedule):
    """char-rnn's schedule: `rate` for `after` epochs, then times `decay` after every further epoch."""

    def __init__(self, rate, steps_per_epoch, decay, after):
        self.rate, self.steps_per_epoch, self.decay, self.after = rate, steps_per_epoch, decay, after

    def __call__(self, step):
        epoch = tf.cast(step, tf.float32) // self.steps_per_epoch
        return self.rate * tf.pow(self.decay, tf.maximum(0.0, epoch - self.after + 1))

    def get_config(self):
        return {"rate": self.rate, "steps_per_epoch": self.steps_per_epoch, "decay": self.decay, "after": self.after}


def music_inputs(latents, music, clips):
    """`[N, D + F]`: each latent beside the music of the frame after it (the frame it predicts), within
    its clip (a clip's last frame, only ever a target, repeats its own music)."""
    following = np.empty_like(music)
    for start, end in data.clip_bounds(clips):
        following[start:end - 1], following[end - 1] = music[start + 1:end], music[end - 1]
    return np.concatenate([latents, following], 1).astype(np.float32)


def _load_music(cfg, latents_path, latents):
    """(music [N, F], its record for the export), or (None, None) without --music."""
    if not cfg["music"]:
        return None, None
    if cfg["model"] != "lstm":
        raise cli.UserError("--music conditions the lstm model only")
    if cfg["extra_latents"]:
        raise cli.UserError("--music cannot use --extra_latents (their music is not known)")
    found = data.load_latent_music(latents_path, latents)
    if found is None:
        raise cli.UserError(f"--music needs the music features of {latents_path}: encode saves them beside the "
                            f"latents ({data.latent_music_path(latents_path)}) when the dataset has a soundtrack, and "
                            "this one has none")
    music, names, fps = found
    return music, {"names": [str(n) for n in names], "features": int(music.shape[1]), "fps": fps,
                   "crc32": zlib.crc32(np.ascontiguousarray(music).tobytes())}


def split(latents, config, clips=None):
    """(train, train_clips, val): each clip's leading `train_frac` trains, the rest of it validates.

    train: the clips' training parts end to end, with their clip ids `train_clips`. val: one
    `(context, stretch)` per clip, `stretch` its validation frames and `context` the (up to
    `seq_length`) training frames of the same clip just before it, which warm the state up;
    None when train_frac is 1.
    """
    clips = np.zeros(len(latents), np.int32) if clips is None else clips
    val_needed = config["train_frac"] < 1
    train, train_clips, val = [], [], []
    for k, (start, end) in enumerate(data.clip_bounds(clips)):
        cut = start + int((end - start) * config["train_frac"])
        train.append(latents[start:cut])
        train_clips.append(np.full(cut - start, k, np.int32))
        if val_needed and cut > start and end > cut:
            val.append((latents[max(start, cut - config["seq_length"]):cut], latents[cut:end]))
    train, train_clips = np.concatenate(train), np.concatenate(train_clips)
    n, need = len(latents), config["batch_size"] * (config["seq_length"] + 1)
    if len(train) < need or (val_needed and sum(len(v) for _, v in val) < 2):
        total = int(np.ceil(need / config["train_frac"])) + (2 if val_needed else 0)
        raise cli.UserError(
            f"{n} latent frames are too few: one batch needs batch_size {config['batch_size']} x "
            f"(seq_length {config['seq_length']} + 1) = {need} training frames, and the validation part "
            f"(1 - train_frac = {1 - config['train_frac']:.2f}) at least 2; give at least {total} frames "
            "or lower --batch_size/--seq_length")
    return train, train_clips, (val if val_needed else None)


def stream_layout(clips, batch_size, seq_length):
    """Where char-rnn's windows start: `(starts, fresh)`, int and bool `[num_batches, batch_size]`.

    As in char-rnn, stream s is the s-th contiguous slice of the sequence and batch b holds
    steps b*S .. b*S+S of every stream; but a stream's windows restart at each cut, at the next
    clip's first frame (the partial window before it is dropped), and `fresh` marks the windows
    that begin a clip, where the stream's carried state must be reset. Every stream gets as many
    windows as the shortest; with one clip this is char-rnn's layout exactly.
    """
    clips = np.asarray(clips)
    length = len(clips) // batch_size
    starts, fresh = [], []
    for s in range(batch_size):
        lo = s * length
        mine = [(lo + a + k * seq_length, k == 0)
                for a, b in data.clip_bounds(clips[lo:lo + length]) for k in range((b - a - 1) // seq_length)]
        starts.append([m[0] for m in mine])
        fresh.append([m[1] for m in mine])
    count = min(len(m) for m in starts)
    return (np.array([m[:count] for m in starts], np.int64).reshape(batch_size, count).T,
            np.array([m[:count] for m in fresh], bool).reshape(batch_size, count).T)


def char_rnn_batches(sequence, batch_size, seq_length, clips=None):
    """`[N, D]` -> `[num_batches, batch_size, seq_length + 1, D]`, laid out by `stream_layout`.

    Batch b holds the next window of every stream (the last step is only a target, and the
    next batch's first input); with `clips`, no window spans a cut.
    """
    starts, _ = stream_layout(np.zeros(len(sequence), np.int32) if clips is None else clips, batch_size, seq_length)
    return sequence[starts[..., None] + np.arange(seq_length + 1)]


def epoch_windows(train, train_clips, cfg, epoch):
    """`across_cuts`' `(windows, fresh)` for epoch `epoch`: the training clips end to end in an order drawn
    from the seed and the epoch, laid out as one sequence (no state reset; windows span the cuts)."""
    bounds = data.clip_bounds(train_clips)
    order = np.random.default_rng([cfg["seed"], epoch]).permutation(len(bounds))
    sequence = np.concatenate([train[slice(*bounds[k])] for k in order])
    windows = char_rnn_batches(sequence, cfg["batch_size"], cfg["seq_length"])
    fresh = np.zeros(windows.shape[:2], bool)
    fresh[0] = True
    return windows, fresh


@functools.lru_cache(maxsize=None)
def lstm_sizing(data_path, lstm_flags, mtime):
    """(train_lstm flags, why): the LSTM flagfile fitted to the footage in `data_path`.

    char-rnn's parallel streams split the training frames; on a few thousand frames the
    flagfile's batch size would leave a handful of updates per epoch, so it is lowered until
    an epoch makes at least MIN_UPDATES_PER_EPOCH updates (never below one stream).
    """
    del mtime  # part of the cache key only: a remade dataset is sized again
    cfg = resolve_config(flagfile_settings(lstm_flags))
    batch, seq, frac = cfg["batch_size"], cfg["seq_length"], cfg["train_frac"]
    frames, _, extras = data.load_dataset(data_path)
    bounds = data.clip_bounds(extras.get("clips", np.zeros(len(frames), np.int32)))
    train = sum(int((end - start) * frac) for start, end in bounds)
    fitted = int(np.clip(train // (seq * MIN_UPDATES_PER_EPOCH), 1, batch))
    why = (f"{len(frames)} frames in {cli.plural(len(bounds), 'clip')}, {train} for training: --batch_size={fitted} "
           f"(flagfile: {batch}) ")
    why += ("keeps the flagfile's batch size" if fitted == batch else
            f"so that an epoch of {seq}-step windows still makes >= {MIN_UPDATES_PER_EPOCH} updates" if fitted > 1
            else "(one stream: the footage is short)")
    return [f"--batch_size={fitted}"], why


def train_and_evaluate(latents_path, workdir, export_dir, clips=None, load_decoder=None, **config):
    """Trains (resuming from `workdir` if it holds a checkpoint), exports, returns a summary dict
    (None on a worker other than the chief: only the chief writes records and exports).

    clips: int [N], the clip of every latent (default: the ids `encode` saved beside the file,
    or one clip). The export holds the epoch with the best validation loss. load_decoder:
    `(path, dim, source) -> decoder` (latents -> uint8 frames), how the caller loads the
    `calibrate_decoder` (`savedmodels.calibration_decoder`); needed when that setting is given. It is
    called before training, once a `distribute` strategy has started.

    Keys: export_dir (the new version directory), epochs (trained), best_epoch and best_val_loss
    (exported; the last epoch and None without validation), trained_epochs, stopped_early,
    train_loss and val_loss (last epoch),
    first_loss (the first batch's), loss_drop (first_loss / train_loss), seconds_to_100x
    (training seconds until an epoch's mean loss was 100x below first_loss, or None),
    frames_per_second (median over epochs), train_seconds, history (one dict per epoch), config.
    """
    cfg = resolve_config(config)
    strategy = training.strategy(cfg["distribute"])
    chief = training.is_chief(strategy)
    training.replicas(strategy, cfg["batch_size"])  # the batch must split evenly
    prepared = prepare_data(latents_path, cfg, clips)
    decode = _calibration_decoder(cfg, prepared.latents.shape[1], prepared.source, load_decoder)
    claimed = {k: v for k, v in cfg.items() if k not in _RESUMABLE and _ADDED.get(k, object()) != v}
    training.claim_workdir(workdir, claimed, prepared.fingerprint, write=chief)
    model, net, optimizer, epoch, windows = build(cfg, prepared, strategy)
    checkpoints = training.Checkpoints(workdir, tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch),
                                       chief)
    history = []
    if checkpoints.restore():
        history = _read_history(workdir, int(epoch.numpy()))
        print(f"Resuming from {checkpoints.manager.latest_checkpoint} "
              f"(epoch {int(epoch.numpy())} of {cfg['epochs']}).")
    fit(cfg, workdir, (model, net, optimizer, epoch, windows), prepared, strategy, checkpoints, history, chief)
    if not chief:
        return None
    best, stopped_early = _choose_epoch(workdir, model, history, cfg)
    record = {**prepared.learnt(), **_best_record(history, best)}
    save_trained(workdir, model, cfg, record, latents_path)
    if cfg["distribute"] != "none":  # plain variables, not the strategy's, in the SavedModel
        model = sequence_model.stateful_copy(model, cfg["batch_size"])
    final = export_model(model, export_dir, cfg, record, prepared.latents, prepared.clips, decode, prepared.music)
    return dict(_summary(history, cfg, final), **_best_record(history, best), stopped_early=stopped_early)


@dataclasses.dataclass
class TrainingData:
    """The latents of a run, checked and split: what the epoch loop and the export need of them."""
    latents: np.ndarray  # [N, D]: the main file, which the calibration rolls out from
    clips: np.ndarray  # [N] clip ids
    train: np.ndarray  # the training frames, extra latents appended
    train_clips: np.ndarray
    val: list  # one (context, stretch) per clip, or None
    fresh: np.ndarray  # `stream_layout`'s windows that begin a clip
    mean: np.ndarray  # the standardisation the model carries
    std: np.ndarray
    fingerprint: dict  # what the run and its export record of the data
    source: dict  # `data.latent_source`: the encoder that made the latents
    music: np.ndarray = None  # [N, F] with --music: the latents' music features
    music_record: dict = None  # with --music: their names, count and fps, for the export

    def learnt(self):
        """What the export records of what the model learnt from."""
        learnt = {"latents": self.fingerprint, "normalization": {"mean": np.asarray(self.mean).tolist(),
                                                                 "std": np.asarray(self.std).tolist()}}
        if self.music_record:
            learnt["music"] = {k: self.music_record[k] for k in ("names", "features", "fps", "beat_speed")}
        if self.source.get("training_id"):
            learnt["autoencoder"] = {k: self.source.get(k) for k in ("training_id", "encoder")}
        return learnt


def prepare_data(latents_path, cfg, clips=None):
    """The latents at `latents_path` (and their `clips`, or those `encode` saved) as a `TrainingData`;
    every setting that depends on them is checked here, before anything is written."""
    latents = data.load_latents(latents_path, dim=cfg["dim"] or None)
    clips = data.load_latent_clips(latents_path, len(latents)) if clips is None else \
        data.check_clips(clips, len(latents))
    if cfg["dropout"] and cfg["model"] != "lstm":
        raise cli.UserError("dropout applies to the lstm model only")
    if cfg["box_residual"] and (cfg["model"] != "lstm" or not cfg["rollout_box_dims"]):
        raise cli.UserError("--box_residual needs the lstm model and the stage box's dimensions "
                            "(--rollout_box_dims=3 with --stage latents)")
    if cfg["patience"] and cfg["train_frac"] == 1:
        raise cli.UserError("patience needs a validation part: set train_frac below 1")
    source = data.latent_source(latents_path, latents)
    music, music_record = _load_music(cfg, latents_path, latents)
    if cfg["rollout_beat_guidance"] and not (music is not None and cfg["head"] == "mdn"):
        raise cli.UserError("--rollout_beat_guidance needs a music-conditioned model with the mixture head "
                            "(--music --head=mdn)")
    if music_record:
        music_record["beat_speed"] = musicality.beat_speed(latents, music, music_record["names"], clips)
    inputs = latents if music is None else music_inputs(latents, music, clips)
    train, train_clips, val = split(inputs, cfg, clips)
    train, train_clips, extra_prints = _add_extra_latents(train, train_clips, cfg["extra_latents"], latents.shape[1],
                                                          source, latents_path)
    fresh = _check_layout(train_clips, cfg, len(latents))
    mean, std = sequence_model.standardizer(train) if cfg["normalize"] else (
        np.zeros(train.shape[1], np.float32), np.ones(train.shape[1], np.float32))
    fingerprint = {"frames": int(latents.shape[0]), "dim": int(latents.shape[1]),
                   "crc32": zlib.crc32(np.ascontiguousarray(latents).tobytes())}
    if clips[-1] > 0:
        fingerprint["clips"] = zlib.crc32(np.ascontiguousarray(clips).tobytes())
    if extra_prints:
        fingerprint["extra_latents"] = extra_prints
    if music_record:
        fingerprint["music"] = music_record["crc32"]
    return TrainingData(latents, clips, train, train_clips, val, fresh, mean, std, fingerprint, source, music,
                        music_record)


def box_stage(prepared, cfg, percentiles=(1, 99)):
    """`[2, box dims]`: the stage the training frames' box keeps within (its 1st and 99th percentiles), which a
    residual box's rollout keeps to; None without `box_residual`."""
    if not cfg["box_residual"]:
        return None
    d, b = prepared.latents.shape[1], cfg["rollout_box_dims"]
    return np.percentile(prepared.train[:, d - b:d], percentiles, axis=0).tolist()


def build(cfg, prepared, strategy):
    """(model, net, optimizer, epoch counter, training windows): the model and what trains it, made
    under `strategy`; the windows are the normalised training frames in `char_rnn_batches`' layout."""
    keras.utils.set_random_seed(cfg["seed"])
    with strategy.scope():
        model = sequence_model.build_model(
            cfg["model"], prepared.latents.shape[1], prepared.mean, prepared.std, batch_size=cfg["batch_size"],
            units=cfg["units"], num_layers=cfg["num_layers"], fnn_hidden=cfg["fnn_hidden"], head=cfg["head"],
            mixtures=cfg["mixtures"], init=cfg["init"], seed=cfg["seed"], dropout=cfg["dropout"],
            music_dim=0 if prepared.music is None else prepared.music.shape[1],
            box_residual=cfg["rollout_box_dims"] if cfg["box_residual"] else 0, box_stage=box_stage(prepared, cfg))
    net = sequence_model.make_net(model)
    windows = (epoch_windows(net.normalize(prepared.train), prepared.train_clips, cfg, 0)[0] if cfg["across_cuts"]
               else char_rnn_batches(net.normalize(prepared.train), cfg["batch_size"], cfg["seq_length"],
                                     prepared.train_clips))
    with strategy.scope():  # no clipping here: the step clips the global batch's gradient (make_train_step)
        optimizer = keras.optimizers.Adam(
            EpochDecay(cfg["learning_rate"], len(windows), cfg["lr_decay"], cfg["lr_decay_after"]))
        optimizer.build(model.trainable_variables)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    return model, net, optimizer, epoch, windows


def fit(cfg, workdir, built, prepared, strategy, checkpoints, history, chief):
    """The epoch loop, from the checkpointed epoch to `epochs` or until `patience` stops it: appends one
    record per epoch to `history` and, on the chief, keeps the best weights, history.json and TensorBoard
    scalars; every epoch ends in a checkpoint."""
    model, net, optimizer, epoch, windows = built
    distributed = cfg["distribute"] != "none"
    train_step = make_train_step(net, optimizer, cfg, strategy if distributed else None)
    on_replicas = _on_replicas(cfg, strategy)
    val_loss = _validation(cfg, net, prepared.val)
    writer = training.summary_writer(workdir, int(epoch.numpy())) if chief else None
    if cfg["head"] == "mdn":
        print("Losses are the mixture's negative log-likelihood per latent dimension: lower is better, and "
              "below 0 once the model puts a density above 1 on the true next frame.")
    progress = cli.Progress(cfg["epochs"] * len(windows), unit="batch", done=int(epoch.numpy()) * len(windows))
    for e in range(int(epoch.numpy()), cfg["epochs"]):
        if _stalled(history, cfg["patience"]):
            break
        start = time.perf_counter()
        progress.what = f"Epoch {e + 1}/{cfg['epochs']} (lr {float(optimizer.learning_rate):.3g}) "
        if cfg["across_cuts"]:
            windows, fresh = epoch_windows(net.normalize(prepared.train), prepared.train_clips, cfg, e)
        else:
            fresh = prepared.fresh
        losses = _train_epoch(train_step, windows, fresh, net, on_replicas,
                              strategy if distributed else None, progress, e)
        seconds = time.perf_counter() - start
        record = {"epoch": e + 1, "train_loss": float(np.mean(losses)), "first_batch_loss": losses[0],
                  "val_loss": None if val_loss is None else val_loss(), "learning_rate": float(optimizer.learning_rate),
                  "seconds": seconds, "frames_per_second": len(windows) * cfg["batch_size"] * cfg["seq_length"]
                  / seconds}
        history.append(record)
        improved = _best(history) is record
        if improved and chief:
            _save_best(workdir, model, e + 1)
        progress.write(f"Epoch {e + 1}/{cfg['epochs']}: train loss {record['train_loss']:.5g}, val loss "
                       f"{'-' if val_loss is None else format(record['val_loss'], '.5g')}"
                       f"{' (best so far)' if improved else ''}, {record['frames_per_second']:.0f} frames/s; "
                       f"{progress.times()}")
        if chief:
            training.write_summaries(writer, e + 1, {key: record[key] for key in (
                "train_loss", "val_loss", "learning_rate", "frames_per_second")})
            training.write_json(os.path.join(workdir, "history.json"), history)
        epoch.assign(e + 1)
        checkpoints.save(e + 1)
    progress.close()
    if writer is not None:
        writer.close()


def _on_replicas(cfg, strategy):
    """`on_replicas(make)`: `make(first, count)` of each replica's streams (replica r always gets the same
    ones) as a distributed value; without distribution `make` of the whole batch."""
    if cfg["distribute"] == "none":
        return lambda make: make(0, cfg["batch_size"])
    per_replica = training.replicas(strategy, cfg["batch_size"])
    return lambda make: strategy.experimental_distribute_values_from_function(
        lambda ctx: make(ctx.replica_id_in_sync_group * per_replica, per_replica))


def _train_epoch(train_step, windows, fresh, net, on_replicas, strategy, progress, e):
    """One pass over the windows, the state carried from batch to batch; the batches' losses."""
    state = on_replicas(lambda first, count: net.zero_state(count))
    losses = []
    for b, window in enumerate(windows):
        if b and fresh[b].any():  # a stream reached a cut: its next window is a new clip
            mask = on_replicas(lambda first, count: tf.constant(fresh[b][first:first + count, None]))
            state = strategy.run(lambda s, m: tf.where(m, 0.0, s), args=(state, mask)) if strategy else \
                tf.where(mask, 0.0, state)
        loss, state = train_step(on_replicas(lambda first, count: window[first:first + count]), state)
        losses.append(float(loss))
        if not np.isfinite(losses[-1]):
            raise cli.UserError(f"training diverged (loss {losses[-1]}) in epoch {e + 1}; "
                                "lower --learning_rate or keep --grad_clip on")
        progress.update(e * len(windows) + b + 1, [("loss", losses[-1])])
    return losses


def _validation(cfg, net, val):
    """`() -> the validation loss` (`validation_loss` over every clip's part), or None without validation."""
    if val is None:
        return None
    weights = loss_weights(cfg, net.head.dim)
    loss_fn = tf.function(
        lambda x, y, warm: net.head.loss(net.window(x, net.zero_state(1))[0][:, warm - 1:],
                                         y[:, warm - 1:, :net.dim], weights),
        jit_compile=cfg["jit_compile"])
    parts = [(net.normalize(np.concatenate([context, stretch]))[None], len(context), len(stretch))
             for context, stretch in val]
    return lambda: validation_loss(loss_fn, parts)


def _choose_epoch(workdir, model, history, cfg):
    """(the epoch record to export, whether patience stopped the run): the best validation epoch (the
    last without validation), whose weights are restored into `model`."""
    best = _best(history) or history[-1]
    stopped_early = _stalled(history, cfg["patience"]) and history[-1]["epoch"] < cfg["epochs"]
    if stopped_early:
        print(f"Stopped early after epoch {history[-1]['epoch']}: no better validation loss in the "
              f"{cfg['patience']} epochs since epoch {best['epoch']} (--patience).")
    if best is not history[-1]:
        _restore_best(workdir, model, best["epoch"])
    if best["val_loss"] is not None:
        print(f"Exporting epoch {best['epoch']} of {history[-1]['epoch']}: the best validation loss "
              f"({best['val_loss']:.5g}; last epoch {history[-1]['val_loss']:.5g}).")
    return best, stopped_early


def save_trained(workdir, model, cfg, record, latents_path):
    """The trained run's result, which `export_run` exports again without training: the chosen epoch's
    model (`<workdir>/model.keras`, one stream) and `<workdir>/trained.json` (its settings, what it learnt
    from and the latents file it trained on)."""
    single = sequence_model.stateful_copy(model, 1)
    with cli.atomic_output(os.path.join(workdir, "model.keras")) as tmp:
        single.save(tmp)
    training.write_json(os.path.join(workdir, TRAINED), {
        "config": cfg, "latents_file": os.path.abspath(latents_path), **record})


def export_model(model, export_dir, cfg, record, latents=None, clips=None, decode=None, music=None):
    """Exports `model` as the next version of `export_dir/<export_name>` and returns its directory.

    Its rollout recipe is that of the `rollout_*` settings, or with `calibrate_frames` the one
    `calibration` picks for it among the `calibrate_*` candidates, rolled out from `latents` (the
    training latents, clip ids `clips`; `decode` adds the on-screen measures). `tf_dance.json` records
    `cfg`, `record` (what the training learnt, its best epoch) and the calibration. music: the latents'
    music features, which a music-conditioned model's calibration rollouts dance to.
    """
    recipe = rollout_recipe(cfg)
    calibrated = {}
    if cfg["calibrate_frames"]:
        recipe, calibrated["calibration"] = calibration.calibrate(
            model, latents, cfg["calibrate_fps"], calibration_candidates(cfg, recipe), clips=clips,
            frames=cfg["calibrate_frames"], random_seed=cfg["seed"], decode=decode, music=music,
            beat_speed=(record.get("music") or {}).get("beat_speed"))
    final = rollout.export(model, export_dir, cfg["export_name"] or f"dance_{cfg['model']}",
                           {"config": cfg, **record, **calibrated}, recipe)
    print(f"Exported {final}")
    return final


def export_run(workdir, export_dir, latents_path=None, load_decoder=None, **overrides):
    """Exports the model a finished training run in `workdir` chose again, without training; returns the
    new version directory.

    overrides: settings as for `train_and_evaluate`; only the export settings (`EXPORT_SETTINGS`: the
    rollout recipe, its calibration, the export name) may differ from the run's. latents_path: the
    latents to calibrate on (default: the file the run trained on), which must be the run's training
    latents. load_decoder: as for `train_and_evaluate`.
    """
    trained = read_trained(workdir)
    recorded = resolve_config(trained["config"])
    cfg = resolve_config({**recorded, **overrides})
    changed = sorted(k for k in cfg if k not in EXPORT_SETTINGS and cfg[k] != recorded[k])
    if changed:
        diffs = ", ".join(f"{k}: {recorded[k]!r} -> {cfg[k]!r}" for k in changed)
        raise cli.UserError(f"{workdir} was trained with other settings ({diffs}); only the rollout_*, "
                            "calibrate_* and export_name settings can change without training (train_lstm)")
    decode = _calibration_decoder(cfg, trained["latents"]["dim"], trained.get("autoencoder") or {}, load_decoder)
    latents = clips = music = None
    if cfg["calibrate_frames"]:
        path = latents_path or trained["latents_file"]
        latents, clips = _training_latents(path, trained["latents"], workdir)
        music = _load_music(cfg, path, latents)[0]
    model = sequence_model.stateful_copy(keras.models.load_model(os.path.join(workdir, "model.keras")),
                                         cfg["batch_size"])
    record = {k: v for k, v in trained.items() if k not in ("config", "latents_file")}
    return export_model(model, export_dir, cfg, record, latents, clips, decode, music)


def read_trained(workdir):
    """`<workdir>/trained.json` of a finished run (with its model.keras), or a one-line `cli.UserError`."""
    path = os.path.join(workdir, TRAINED)
    if not os.path.isdir(workdir):
        raise cli.UserError(f"{workdir} is not a trained LSTM run (not a directory); give the --workdir of a "
                            "train_lstm run")
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(workdir, "model.keras")):
        unfinished = os.path.isdir(os.path.join(workdir, "checkpoints"))
        raise cli.UserError(f"{workdir} is not a trained LSTM run (no {TRAINED} and model.keras): " + (
            "its training has not finished (or predates this record); run train_lstm again with the same flags, "
            "which finishes it or writes the record"
            if unfinished else "give the --workdir of a finished train_lstm run"))
    trained = training.read_json(path, None, workdir)
    if not isinstance(trained, dict) or not isinstance(trained.get("config"), dict) or not isinstance(
            trained.get("latents"), dict):
        raise cli.UserError(f"{path} is damaged (not a trained run's record); run train_lstm again with the "
                            "same flags to rewrite it")
    return trained


def _training_latents(path, fingerprint, workdir):
    """(latents, clip ids) at `path`, refused unless they are those `fingerprint` records."""
    latents = data.load_latents(path)
    if len(latents) != fingerprint.get("frames") or zlib.crc32(
            np.ascontiguousarray(latents).tobytes()) != fingerprint.get("crc32"):
        raise cli.UserError(f"{path} holds other latents than the run in {workdir} trained on; give --latents=<the "
                            "training latents> to calibrate on")
    return latents, data.load_latent_clips(path, len(latents))


def _calibration_decoder(cfg, dim, source, load_decoder):
    """The export settings checked before any work (candidate recipes the export would refuse are
    refused now); the calibration's decoder, loaded by `load_decoder`, or None."""
    for candidate in calibration_candidates(cfg, rollout_recipe(cfg)):
        rollout.check_sampling({k: v for k, v in candidate.items() if k in rollout.SAMPLING}, dim)
    if not (cfg["calibrate_frames"] and cfg["calibrate_decoder"]):
        return None
    if load_decoder is None:
        raise ValueError("calibrate_decoder is set: pass load_decoder (e.g. savedmodels.calibration_decoder)")
    return load_decoder(cfg["calibrate_decoder"], dim, source)


def rollout_recipe(cfg):
    """The export's rollout recipe from the `rollout_*` settings (see `rollout.export`)."""
    return {key: cfg[f"rollout_{key}"] for key in ("temperature", "noise", *rollout.SAMPLING)}


def calibration_candidates(cfg, recipe):
    """The recipes `calibrate_frames` chooses among: `recipe` alone when calibration is off."""
    if not cfg["calibrate_frames"]:
        return [recipe]
    return calibration.candidates(recipe, **{name: cfg[f"calibrate_{name}"] for name in calibration.GRID})


def loss_weights(cfg, dim):
    """Per-dimension loss weights `[dim]` (the box dims weighted by --box_loss_weight), or None when all are 1."""
    if cfg["box_loss_weight"] == 1 or not cfg["rollout_box_dims"]:
        return None
    weights = np.ones(dim, np.float32)
    weights[dim - cfg["rollout_box_dims"]:] = cfg["box_loss_weight"]
    return tf.constant(weights)


def validation_loss(loss_fn, parts):
    """Mean loss over every validation frame of every clip; `parts`: (normalised [1, T, D], warm-up, frames)."""
    losses = [float(loss_fn(x[:, :-1], x[:, 1:], warm)) for x, warm, _ in parts]
    return losses[0] if len(losses) == 1 else float(np.average(losses, weights=[n for *_, n in parts]))


def _best(history):
    """The first epoch record with the lowest validation loss, or None without validation."""
    scored = [r for r in history if r["val_loss"] is not None]
    return min(scored, key=lambda r: r["val_loss"]) if scored else None


def _best_record(history, best):
    return {"best_epoch": best["epoch"], "best_val_loss": best["val_loss"], "trained_epochs": history[-1]["epoch"]}


def _stalled(history, patience):
    best = _best(history)
    return bool(patience and best and history[-1]["epoch"] - best["epoch"] >= patience)


def _save_best(workdir, model, epoch):
    """The best epoch's weights in `<workdir>/best_weights.npz`, so a resumed run can still export them."""
    weights = {f"w{i}": v.numpy() for i, v in enumerate(model.trainable_variables)}
    with cli.atomic_output(os.path.join(workdir, BEST_WEIGHTS)) as tmp, open(tmp, "wb") as f:
        np.savez(f, epoch=np.int64(epoch), **weights)


def _restore_best(workdir, model, epoch):
    path = os.path.join(workdir, BEST_WEIGHTS)
    missing = cli.UserError(f"{path} does not hold epoch {epoch}'s weights (the best); "
                            "train again in a fresh --workdir")
    if not os.path.exists(path):
        raise missing
    with np.load(path, allow_pickle=False) as saved:
        if int(saved["epoch"]) != epoch:
            raise missing
        for i, v in enumerate(model.trainable_variables):
            v.assign(saved[f"w{i}"])


def _add_extra_latents(train, train_clips, paths, dim, source, latents_path):
    """Extra training clips appended after the split ones; returns them with each file's fingerprint. Files
    encoded by another autoencoder training than the main latents (`source`) are refused."""
    prints = []
    for path in paths:
        extra = data.load_latents(path, dim=dim)
        savedmodels.check_latent_source(data.latent_source(path, extra), source.get("training_id"),
                                        f"the encoder of {latents_path}", path, override=None)
        ids = data.load_latent_clips(path, len(extra))
        train = np.concatenate([train, extra])
        train_clips = np.concatenate([train_clips, ids + train_clips[-1] + 1])
        prints.append({"frames": len(extra), "crc32": zlib.crc32(np.ascontiguousarray(extra).tobytes())})
    return train, train_clips, prints


def _check_layout(train_clips, cfg, n):
    """`fresh` of `stream_layout`, or `cli.UserError` when the clips' training parts give no batch."""
    starts, fresh = stream_layout(train_clips, cfg["batch_size"], cfg["seq_length"])
    if not len(starts):
        raise cli.UserError(
            f"{n} latent frames in {train_clips[-1] + 1} clips are too few: each of batch_size {cfg['batch_size']} "
            f"streams ({len(train_clips) // cfg['batch_size']} training frames) needs seq_length "
            f"{cfg['seq_length']} + 1 frames inside one clip; give longer clips or lower --batch_size/--seq_length")
    return fresh


def make_train_step(net, optimizer, cfg, strategy=None):
    """`step(window [B, S+1, D] normalised, state) -> (loss, state)`: one optimizer update, compiled.

    Without a strategy the whole update, optimizer included, is one XLA program. Under a
    `tf.distribute` strategy `window` and `state` are per-replica values (each replica's own streams
    and their LSTM state, which never leave it) and the step runs under `strategy.run`; only the
    gradient computation is compiled, since the replicas' all-reduce cannot run inside XLA on CPU.
    Each replica's loss is the mean over its streams divided by the number of replicas; the summed
    gradients are then those of the mean over the global batch, and clipping sees that sum.
    """
    variables = net.model.trainable_variables
    if not optimizer.built:
        optimizer.build(variables)
    noise, seed, dropout = cfg["input_noise"], cfg["seed"], cfg["dropout"]
    weights = loss_weights(cfg, net.head.dim)
    replicas = strategy.num_replicas_in_sync if strategy else 1

    @tf.function(jit_compile=cfg["jit_compile"])
    def gradients(window, state, replica):
        x, y = window[:, :-1], window[:, 1:, :net.dim]
        dropout_seed = tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(
            tf.stack([tf.constant(seed, tf.int64), tf.cast(optimizer.iterations, tf.int64)]), 1), replica) \
            if dropout else None
        if noise:  # the global batch's noise, sliced: the same whatever the number of replicas
            n = tf.shape(x)[0]
            full = tf.random.stateless_normal(tf.concat([[n * replicas], tf.shape(x)[1:2], [net.dim]], 0), tf.stack(
                [tf.constant(seed, tf.int64), tf.cast(optimizer.iterations, tf.int64)]))
            if net.box_residual:
                full = full * net.noise_mask()
            full = tf.pad(full, [[0, 0], [0, 0], [0, net.music_dim]])  # the music is heard as it is
            x = tf.ensure_shape(x + noise * full[replica * n:(replica + 1) * n], x.shape)  # a static batch of 1 stays 1
        with tf.GradientTape() as tape:
            if cfg["condition_steps"]:
                params, state = net.conditioned_window(x, state, cfg["ground_truth_steps"], cfg["condition_steps"],
                                                       dropout_seed)
            else:
                params, state = net.window(x, state, dropout_seed)
            loss = net.head.loss(params, y, weights) / replicas
        return loss, tape.gradient(loss, variables), state

    def replica_step(window, state):
        context = tf.distribute.get_replica_context()
        loss, grads, state = gradients(window, state, context.replica_id_in_sync_group)
        if replicas > 1:
            grads = context.all_reduce("SUM", grads)
        grads = _clip(grads, cfg)
        if replicas > 1:  # Keras's apply_gradients sums the replicas' gradients once more: each gives its share
            grads = [g / replicas for g in grads]
        optimizer.apply_gradients(zip(grads, variables))
        return loss, state

    if strategy is None:
        return tf.function(replica_step, jit_compile=cfg["jit_compile"])

    @tf.function
    def step(window, state):
        loss, state = strategy.run(replica_step, args=(window, state))
        return strategy.reduce("SUM", loss, None), state

    return step


def _clip(grads, cfg):
    """char-rnn's elementwise clamp (`clip=value`) or a rescale to a joint norm (`clip=global_norm`)."""
    if not cfg["grad_clip"]:
        return grads
    if cfg["clip"] == "value":
        return [tf.clip_by_value(g, -cfg["grad_clip"], cfg["grad_clip"]) for g in grads]
    return tf.clip_by_global_norm(grads, cfg["grad_clip"])[0]


def _summary(history, cfg, final):
    first = history[0]["first_batch_loss"]
    last = history[-1]
    elapsed, reached = 0.0, None
    for record in history:
        elapsed += record["seconds"]
        if reached is None and record["train_loss"] <= first / 100:
            reached = elapsed
    rates = [r["frames_per_second"] for r in history[1:]] or [history[0]["frames_per_second"]]
    return {"export_dir": final, "epochs": last["epoch"], "train_loss": last["train_loss"],
            "val_loss": last["val_loss"], "first_loss": first, "loss_drop": first / last["train_loss"],
            "seconds_to_100x": reached, "frames_per_second": statistics.median(rates),
            "train_seconds": elapsed, "history": history, "config": cfg}


def _read_history(workdir, epochs):
    """The first `epochs` records of `<workdir>/history.json`, which a resumed run continues."""
    history = training.read_json(os.path.join(workdir, "history.json"), [], workdir)
    if not isinstance(history, list) or len(history) < epochs or not all(
            isinstance(r, dict) and r.get("epoch") == i + 1 for i, r in enumerate(history[:epochs])):
        raise cli.UserError(f"{os.path.join(workdir, 'history.json')} does not record the {epochs} checkpointed "
                            f"epochs; delete {workdir} to start the run over, or use another --workdir")
    return history[:epochs]
