"""The one client for exported models: find a version, load it once, encode, decode, step, roll out.

Exports live in TF Serving's layout, `<root>/<name>/<version>/`, each with a `tf_dance.json`
record beside `saved_model.pb`. A model argument may be a version directory, a `<name>` root
(its latest complete version is used) or, where a name is known, the `saved_models` root
holding `<name>/`. A version folder is read as TF Serving reads it, as a number: `007/` is
version 7 (two folders for one number are refused as ambiguous); a folder without
`saved_model.pb` is an unfinished export and is skipped. Each version directory is loaded once
per process. An autoencoder's encoder and decoder carry the id of the training that made
them, and a pair from two trainings is refused; a sequence model records the id of the
autoencoder training whose latents it learnt, and is served with that training's encoder and
decoder (`load_models`, `pick`), since another training's latents mean nothing to it. Every
failure is a `cli.UserError` that names the model directory. TensorFlow is imported only when
a model is loaded.
"""

import dataclasses
import functools
import json
import logging
import math
import os
import re

import numpy as np

from tf_dance import cli

METADATA = "tf_dance.json"
ENCODER, DECODER, LSTM = "encoder", "decoder", "dance_lstm"  # the default folder names under saved_models
STREAM_CHUNK = 4096  # frames per continuation call when a rollout is streamed
_DIGITS = re.compile(r"[0-9]+")  # ASCII digits only (fullmatch), as TF Serving reads version folders


# ---- finding a version


def is_version(path):
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def version_dirs(model_root):
    """Complete version directories under `model_root`, oldest first (by number, not by name)."""
    if not os.path.isdir(model_root):
        return []
    found = {}
    for name in os.listdir(model_root):
        full = os.path.join(model_root, name)
        if _DIGITS.fullmatch(name) and is_version(full):
            number = int(name)
            if number in found:
                raise cli.UserError(f"{model_root} holds two folders for version {number} "
                                    f"({found[number]}, {name}): remove or renumber one")
            found[number] = name
    return [os.path.join(model_root, found[n]) for n in sorted(found)]


def versions(model_root):
    """Integer versions under `model_root` that are complete SavedModels, ascending."""
    return [int(os.path.basename(p)) for p in version_dirs(model_root)]


def _root(path, what, name):
    if not path:
        raise cli.UserError(f"no {what} directory given")
    if not os.path.exists(path):
        raise cli.UserError(f"{what} directory not found: {path}")
    if not os.path.isdir(path):
        raise cli.UserError(f"{what} directory is a file: {path}")
    if name and not is_version(path) and os.path.isdir(os.path.join(path, name)):
        return os.path.join(path, name)
    return path


def candidates(path, what, name=None):
    """The version directories `path` may stand for, newest first: itself when it is a version."""
    path = _root(path, what, name)
    if is_version(path):
        return [path]
    if _DIGITS.fullmatch(os.path.basename(os.path.normpath(path))):
        raise cli.UserError(f"{what} at {path} is incomplete (no saved_model.pb)")
    found = version_dirs(path)
    if not found:
        raise cli.UserError(f"no complete {what} version found under {path}")
    return found[::-1]


def resolve(path, what, name=None):
    """A version directory from a version directory, a model root or (with `name`) a saved_models root."""
    return candidates(path, what, name)[0]


def write_record(version_dir, value):
    """Writes `value` as the export's `tf_dance.json` (the writers' side of `record`)."""
    with open(os.path.join(version_dir, METADATA), "w") as f:
        json.dump(value, f, indent=2)


def record(version_dir):
    """The export's `tf_dance.json` as a dict ({} when there is none)."""
    path = os.path.join(version_dir, METADATA)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise cli.UserError(f"the model at {version_dir} is damaged: {METADATA} is unreadable ({e})") from None
    if not isinstance(value, dict):
        raise cli.UserError(f"the model at {version_dir} is damaged: {METADATA} is not a JSON object")
    return value


def training_id(version_dir):
    return record(version_dir).get("training_id")


def _same_training(encoder_dir, decoder_dir):
    """Exports without a record (made before ids existed) match anything."""
    a, b = training_id(encoder_dir), training_id(decoder_dir)
    return a is None or b is None or a == b


def resolve_pair(encoder, decoder):
    """(encoder_dir, decoder_dir) made by one training: the newest decoder that has a matching encoder,
    with the newest such encoder. A version directory given for either pins it. Raises when no pair matches
    (for example an encoder exported by a training killed before it exported its decoder)."""
    encoders = candidates(encoder, "encoder", ENCODER)
    decoders = candidates(decoder, "decoder", DECODER)
    for d in decoders:
        for e in encoders:
            if _same_training(e, d):
                return e, d
    e, d = encoders[0], decoders[0]
    raise cli.UserError(f"encoder {e} (training {training_id(e)}) and decoder {d} (training {training_id(d)}) "
                        "come from different trainings, and no version pairs up; give a matching "
                        "--encoder/--decoder or retrain the autoencoder")


def learnt_from(lstm_record):
    """The autoencoder training id a sequence model's record says its latents came from (None: not recorded)."""
    source = lstm_record.get("autoencoder")
    return source.get("training_id") if isinstance(source, dict) else None


def pick(path, what, name, training, explicit=False, learner=None, allow_mismatch=False, flag=None,
         override="--allow_mismatch"):
    """The version directory of `what` (encoder or decoder) under `path` made by autoencoder training
    `training` (None: the newest, as `resolve`).

    By default (`explicit` False: `path` is the saved_models root the user did not name for this part)
    the newest version of that training is taken, not merely the newest. A version directory, or a
    root named explicitly, must itself be of that training; otherwise, as when no version of it exists,
    a `cli.UserError` names both ids and a matching version to give. `learner` names what belongs to
    `training`, `flag` the option that gives this part and `override` the one that allows a mismatch (for the
    message); exports without a training id match anything; `allow_mismatch` takes the newest whatever its
    training."""
    found = candidates(path, what, name)
    if training is None or allow_mismatch:
        return found[0]
    match = next((c for c in found if training_id(c) in (None, training)), None)
    if match is not None and (match == found[0] or not explicit):
        return match
    got, flag = found[0], flag or what
    if match is None and len(found) == 1:  # a version directory given: a sibling of that training to suggest
        siblings = version_dirs(os.path.dirname(os.path.normpath(got)))[::-1]
        match = next((c for c in siblings if training_id(c) == training), None)
    how = (f"give --{flag}={match} (of that training)" if match else
           f"no {what} of that training is under {path}: give --{flag}=<a {what} version of training {training}>"
           " or retrain on this autoencoder's latents")
    anyway = f", or pass {override} to use it anyway" if override else ""
    raise cli.UserError(f"{learner or 'the model'} belongs to autoencoder training {training}, but "
                        f"{what} {got} comes from training {training_id(got)}; {how}{anyway}")


def calibration_decoder(path, dim, source):
    """The decoder (latents -> uint8 frames) at `path` for an LSTM's calibration (`--calibrate_decoder`):
    it must take `dim`-d latents and be of the autoencoder training that made them (`source`, the
    latents' `data.latent_source` record or an export's "autoencoder"), when that is known."""
    training = source.get("training_id")
    decoder = load_decoder(pick(path, "decoder", DECODER, training, explicit=True,
                                learner=f"the latents (encoded by {source.get('encoder')})", flag="calibrate_decoder",
                                override=None))
    if decoder.dim != dim:
        raise cli.UserError(f"calibrate_decoder {path} takes {decoder.dim}-d latents but these are {dim}-d")
    return decoder


def check_latent_source(source, training, learner, latents_path, allow_mismatch=False, override="--allow_mismatch"):
    """Refuses latents whose `data.latent_source` record says another autoencoder training made them
    than the one `learner` (a sequence model or decoder) belongs to."""
    made_by = source.get("training_id") if isinstance(source, dict) else None
    if allow_mismatch or training is None or made_by is None or made_by == training:
        return
    anyway = f", or pass {override} to use them anyway" if override else ""
    raise cli.UserError(f"{latents_path} was encoded by autoencoder training {made_by} ({source.get('encoder')}), "
                        f"but {learner} belongs to training {training}; encode the data with that training's "
                        f"encoder (or pick models of the latents' training){anyway}")


# ---- loading once


def _tf():
    import tensorflow as tf
    return tf


class _NoGradientNote(logging.Filter):
    """Drops TensorFlow's load-time note that the LSTM's custom gradient was not saved: the export leaves it
    out on purpose (serving never differentiates, and exports are faster without it)."""

    def filter(self, record):
        return "unsaved custom gradients" not in record.getMessage()


@functools.lru_cache(maxsize=16)
def _load(version_dir):
    tf = _tf()
    record(version_dir)
    note = _NoGradientNote()
    logging.getLogger("absl").addFilter(note)
    try:
        loaded = tf.saved_model.load(version_dir)
    except Exception as e:  # noqa: BLE001 (protobuf, OpError, OSError...: any failure is a damaged model)
        raise cli.UserError(f"the model at {version_dir} is damaged or not a SavedModel "
                            f"({type(e).__name__}: {cli.first_line(e)})") from None
    finally:
        logging.getLogger("absl").removeFilter(note)
    return loaded


def load(model_dir, what="model", name=None):
    """The loaded SavedModel (plain `tf.saved_model.load`) of a version, loaded once per process."""
    return _load(os.path.abspath(resolve(model_dir, what, name)))


def _signature(version_dir, what, key, inputs, outputs, loaded=None):
    loaded = loaded or _load(version_dir)
    if key not in loaded.signatures:
        raise cli.UserError(f"{version_dir} is not a SavedModel {what}: it has no {key!r} signature "
                            f"(it has {sorted(loaded.signatures)})")
    signature = loaded.signatures[key]
    specs = signature.structured_input_signature[1]
    if not set(inputs) <= set(specs) or not set(outputs) <= set(signature.structured_outputs):
        raise cli.UserError(f"{version_dir} is not a SavedModel {what}: its {key} maps "
                            f"{sorted(specs)} -> {sorted(signature.structured_outputs)}, "
                            f"not {sorted(inputs)} -> {sorted(outputs)}")
    return signature, specs


def _batches(n, batch_size, progress):
    bar = cli.progress(n, unit="frame", enabled=progress)
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)
        bar.update(min(n, start + batch_size))


class Encoder:
    """uint8 frames `[N, H, W, C]` -> float32 latents `[N, D]` (the serving signature wrapped, with the
    uint8 -> float conversion, in one `tf.function` traced once for any batch size)."""

    def __init__(self, version_dir):
        tf = _tf()
        self.path = version_dir
        self.record = record(version_dir)
        signature, specs = _signature(version_dir, "encoder", "serving_default", ["frames"], ["latent"])
        self.frame_shape = tuple(specs["frames"].shape[1:])
        self.dim = signature.structured_outputs["latent"].shape[-1]
        self._fn = tf.function(lambda u8: signature(frames=tf.cast(u8, tf.float32) / 255.0)["latent"],
                               input_signature=[tf.TensorSpec(specs["frames"].shape, tf.uint8)])

    def __call__(self, frames, batch_size=500, progress=False):
        tf = _tf()
        frames = np.asarray(frames)
        shape = self.frame_shape
        if frames.dtype != np.uint8 or frames.ndim != 4:
            raise cli.UserError(f"frames must be uint8 [N, H, W, C], got {frames.dtype} {frames.shape}")
        if frames.shape[1:] != shape:
            raise cli.UserError(f"frames are {frames.shape[2]}x{frames.shape[1]}x{frames.shape[3]} (WxHxC) but "
                                f"the encoder expects {shape[1]}x{shape[0]}x{shape[2]}; re-run prepare_video at "
                                "that size or train an autoencoder on this data")
        out = [self._fn(tf.constant(frames[a:b])).numpy() for a, b in _batches(len(frames), batch_size, progress)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


DECODE_BFLOAT16 = "decode_bfloat16"  # an exported decoder's signature computing in bfloat16
DECODE_PRECISIONS = ("auto", "float32", "bfloat16")


class Decoder:
    """float latents `[N, D]` -> uint8 frames `[N, H, W, C]`.

    precision: "float32" decodes with `serving_default`; "bfloat16" with the export's `DECODE_BFLOAT16`
    signature (the same function computed in bfloat16: about 1.8x faster where the CPU has bfloat16, a few
    gray levels apart, the same held-out IoU to the third decimal); "auto" picks the latter where the CPU
    computes bfloat16 natively and the export has it."""

    def __init__(self, version_dir, precision="auto"):
        tf = _tf()
        from tf_dance.autoencoder_training import native_bfloat16
        if precision not in DECODE_PRECISIONS:
            raise cli.UserError(f"decoding precision must be one of {DECODE_PRECISIONS}, got {precision!r}")
        self.path = version_dir
        self.record = record(version_dir)
        loaded = _load(version_dir)
        has = DECODE_BFLOAT16 in loaded.signatures
        if precision == "bfloat16" and not has:
            raise cli.UserError(f"the decoder at {version_dir} has no {DECODE_BFLOAT16} signature (exported before "
                                "it existed, or not a plain decoder): decode in float32")
        key = DECODE_BFLOAT16 if has and (precision == "bfloat16" or precision == "auto" and native_bfloat16()) \
            else "serving_default"
        self.precision = "bfloat16" if key == DECODE_BFLOAT16 else "float32"
        signature, specs = _signature(version_dir, "decoder", key, ["latent"], ["frames"], loaded)
        self.dim = specs["latent"].shape[-1]
        self.frame_shape = tuple(signature.structured_outputs["frames"].shape[1:])
        self._fn = tf.function(lambda z: tf.cast(tf.round(signature(latent=z)["frames"] * 255.0), tf.uint8),
                               input_signature=[tf.TensorSpec(specs["latent"].shape, tf.float32)])

    def __call__(self, latents, batch_size=500, progress=False):
        tf = _tf()
        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.dim:
            raise cli.UserError(f"latents must be [N, {self.dim}] for this decoder, got {latents.shape}")
        if not np.all(np.isfinite(latents)):
            raise cli.UserError("latents contain NaN or inf")
        out = [self._fn(tf.constant(latents[a:b])).numpy() for a, b in _batches(len(latents), batch_size, progress)]
        return np.concatenate(out) if out else np.zeros((0, *self.frame_shape), np.uint8)


# What every sequence model export records beside its graph (`rollout.export`); one without them is damaged.
RECORDED = ("block", "max_frames", "rollout")


def _finite(value):
    """A JSON number (bools included) that a float holds and that is finite."""
    try:
        return isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an integer beyond float's range
        return False


def _recipe(record, version_dir):
    """(recipe {temperature, noise}, baked-in controls) from an export's record, checked: a rollout block
    that is not an object of finite numbers is a damaged model."""
    recipe = record["rollout"]
    if not isinstance(recipe, dict):
        raise cli.UserError(f"the model at {version_dir} is damaged: its {METADATA} rollout recipe is "
                            f"{type(recipe).__name__}, not an object")
    for key, value in recipe.items():
        number = key in ("temperature", "noise")
        if not _finite(value) or (number and (isinstance(value, bool) or value < 0)):
            raise cli.UserError(f"the model at {version_dir} is damaged: its {METADATA} rollout recipe holds "
                                f"{key}={repr(value)[:40]}, not a finite number" + (" >= 0" if number else ""))
    sampling = {"temperature": float(recipe.get("temperature", 1.0)), "noise": float(recipe.get("noise", 0.0))}
    # sampling controls baked into the graph (rollout.SAMPLING): recorded, not passed
    return sampling, {k: v for k, v in recipe.items() if k not in sampling}


class SequenceModel:
    """An exported dance LSTM/FNN: its recorded rollout recipe, the stateless step and the rollout."""

    def __init__(self, version_dir):
        self.path = version_dir
        self.record = record(version_dir)  # checked before the graph loads: a damaged record fails at once
        missing = [key for key in RECORDED if key not in self.record]
        if missing:
            raise cli.UserError(f"the model at {version_dir} is damaged: its {METADATA} records no "
                                f"{', '.join(missing)} (every export does)")
        self.recipe, self.controls = _recipe(self.record, version_dir)
        self.block = self.record["block"]
        if isinstance(self.block, bool) or not isinstance(self.block, int) or not 1 <= self.block <= 2**16:
            raise cli.UserError(f"the model at {version_dir} is damaged: {METADATA} holds block {self.block!r}, "
                                "not a positive integer")
        self.max_frames = self.record["max_frames"]  # generated frames one call may return (batch x frames)
        self._rollout, specs = _signature(version_dir, "sequence model", "rollout", ["seed"], ["frames"])
        self.dim = specs["seed"].shape[-1]
        # a music-conditioned model's rollout hears music [B, T, F] instead of being told num_frames
        self.music_features = specs["music"].shape[-1] if "music" in specs else 0
        self.music = self.record.get("music") if self.music_features else None
        loaded = _load(version_dir)
        for key, inputs, outputs in (("prime", ["seed", "temperature", "random_seed"], ["frame", "state"]),
                                     ("continue_rollout", ["state", "start", "music" if self.music_features else
                                                           "num_frames"], ["frames", "state"])):
            _signature(version_dir, "sequence model", key, inputs, outputs)
        self._loaded = loaded

    def _call(self, signature, name, **inputs):
        """The signature's outputs; an input its in-graph checks refuse is a `cli.UserError` quoting them."""
        tf = _tf()
        try:
            return signature(**inputs)
        except tf.errors.InvalidArgumentError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if "assertion failed:" in ln] or [cli.first_line(e)]
            raise cli.UserError(f"{self.path} refused the {name} call: {lines[0][:300]}") from None

    def controls_text(self):
        """The baked-in sampling controls as ", name value" pairs, for progress lines."""
        return "".join(f", {k} {v:g}" for k, v in self.controls.items())

    def sampling(self, temperature=None, noise=None):
        """(temperature, noise): the given values, or the model's recorded recipe where None."""
        temperature = self.recipe["temperature"] if temperature is None else temperature
        noise = self.recipe["noise"] if noise is None else noise
        if not (np.isfinite(temperature) and temperature >= 0):
            raise cli.UserError(f"temperature must be >= 0, got {temperature}")
        if not (np.isfinite(noise) and noise >= 0):
            raise cli.UserError(f"noise must be >= 0, got {noise}")
        return float(temperature), float(noise)

    def _check_music(self, music, batch, num_frames):
        """float32 `[batch, num_frames, F]` from music features `[T, F]` or `[batch, T, F]` (T >= num_frames), or
        None for a model that hears none; `cli.UserError` where the music and the model do not go together."""
        if not self.music_features:
            if music is not None:
                raise cli.UserError(f"the model at {self.path} is not music-conditioned: it dances to no music "
                                    "(train one with train_lstm --music)")
            return None
        if music is None:
            raise cli.UserError(f"the model at {self.path} dances to music: give it a song (generate --audio=song.wav)")
        music = np.asarray(music, np.float32)
        if music.ndim == 2:
            music = np.broadcast_to(music[None], (batch, *music.shape))
        if music.ndim != 3 or music.shape[0] != batch or music.shape[2] != self.music_features:
            raise cli.UserError(f"music must be [T, {self.music_features}] or [{batch}, T, {self.music_features}] "
                                f"features for the model at {self.path}, got shape {music.shape}")
        if music.shape[1] < num_frames:
            raise cli.UserError(f"{num_frames} frames asked for but the music lasts {music.shape[1]}")
        if not np.all(np.isfinite(music)):
            raise cli.UserError("the music features contain NaN or inf")
        return np.ascontiguousarray(music[:, :num_frames])

    def _check(self, seed_frames, num_frames, random_seed):
        seed = np.asarray(seed_frames, dtype=np.float32)
        single = seed.ndim == 2
        if single:
            seed = seed[None]
        if seed.ndim != 3 or seed.shape[1] == 0 or seed.shape[0] == 0:
            raise cli.UserError(f"seed frames must be [T, D] or [B, T, D] with T >= 1, got shape "
                                f"{np.shape(seed_frames)}")
        if seed.shape[-1] != self.dim:
            raise cli.UserError(f"seed frames are {seed.shape[-1]}-d but the model at {self.path} takes "
                                f"{self.dim}-d latents")
        if not np.all(np.isfinite(seed)):
            raise cli.UserError("seed frames contain NaN or inf")
        if int(num_frames) != num_frames or num_frames < 1 or num_frames >= 2**31:
            raise cli.UserError(f"num_frames must be a positive integer, got {num_frames}")
        if int(random_seed) != random_seed or not -2**31 <= random_seed < 2**31:
            raise cli.UserError(f"random_seed must be a 32-bit integer, got {random_seed}")
        return seed, single

    def rollout(self, seed_frames, num_frames, temperature=None, noise=None, random_seed=0, music=None):
        """`num_frames` latents after priming on `seed_frames` (`[T, D]` or `[B, T, D]`), in one call (in
        pieces, joined, past the export's `max_frames` per call).

        Returns `[num_frames, D]` (or `[B, num_frames, D]`) float32; temperature/noise default to the
        model's recipe. music: a music-conditioned model's features `[T, F]` (or `[B, T, F]`), T >=
        num_frames, generated frame n hearing row n; refused by a model without music."""
        tf = _tf()
        seed, single = self._check(seed_frames, num_frames, random_seed)
        music = self._check_music(music, len(seed), num_frames)
        temperature, noise = self.sampling(temperature, noise)
        length = {"num_frames": tf.constant(int(num_frames), tf.int32)} if music is None else {
            "music": tf.constant(music)}
        if self.max_frames and len(seed) * num_frames > self.max_frames:
            frames = np.concatenate(list(self.stream(seed, num_frames, temperature, noise, random_seed, music=music)),
                                    1)
        else:
            frames = self._call(self._rollout, "rollout", seed=tf.constant(seed), **length,
                                temperature=tf.constant(temperature, tf.float32),
                                noise=tf.constant(noise, tf.float32),
                                random_seed=tf.constant(int(random_seed), tf.int32))["frames"].numpy()
        return frames[0] if single else frames

    def stream(self, seed_frames, num_frames, temperature=None, noise=None, random_seed=0, chunk=STREAM_CHUNK,
               music=None):
        """The same frames as `rollout`, yielded in pieces of about `chunk` frames `[B, n, D]`, so that a
        long dance needs memory for one piece only."""
        tf = _tf()
        seed, _ = self._check(seed_frames, num_frames, random_seed)
        music = self._check_music(music, len(seed), num_frames)
        temperature, noise = self.sampling(temperature, noise)
        t, n, s = (tf.constant(temperature, tf.float32), tf.constant(noise, tf.float32),
                   tf.constant(int(random_seed), tf.int32))
        heard = {} if music is None else {"music": tf.constant(music[:, 0])}
        primed = self._call(self._loaded.signatures["prime"], "prime", seed=tf.constant(seed), temperature=t,
                            random_seed=s, **heard)
        yield primed["frame"].numpy()[:, None]
        state, done = primed["state"], 1
        step = max(self.block, chunk // self.block * self.block)
        if self.max_frames:
            step = min(step, max(self.block, self.max_frames // len(seed) // self.block * self.block))
        while done < num_frames:
            want = min(step, -(-(num_frames - done) // self.block) * self.block)
            if music is None:
                length = {"num_frames": tf.constant(want, tf.int32)}
            else:  # the last piece past the song's end hears its last frame
                piece = music[:, done:done + want]
                length = {"music": tf.constant(np.concatenate(
                    [piece, np.repeat(music[:, -1:], want - piece.shape[1], axis=1)], 1))}
            try:
                out = self._call(self._loaded.signatures["continue_rollout"], "continue_rollout", state=state,
                                 start=tf.constant(done, tf.int32), **length,
                                 temperature=t, noise=n, random_seed=s)
            except cli.UserError as e:
                graph_block = re.search(r"must be a multiple of (\d+)", str(e))
                if graph_block is None:
                    raise
                raise cli.UserError(f"the model at {self.path} is damaged: its {METADATA} says block {self.block} but "
                                    f"its graph rolls out in blocks of {graph_block.group(1)}") from None
            state = out["state"]
            frames = out["frames"].numpy()[:, :num_frames - done]
            done += frames.shape[1]
            yield frames

    def initial_state(self, batch_size):
        tf = _tf()
        return self._call(self._loaded.signatures["initial_state"], "initial_state",
                          batch_size=tf.constant(int(batch_size), tf.int32))["state"]

    def step(self, frame, state, music=None):
        """One stateless step: (next_frame, state) for raw latents `frame` [B, D] and the caller's state (and a
        music-conditioned model's features `[B, F]` of the frame to predict)."""
        tf = _tf()
        frame = np.asarray(frame, np.float32)
        music = self._check_music(None if music is None else np.asarray(music, np.float32)[:, None], len(frame), 1)
        heard = {} if music is None else {"music": tf.constant(music[:, 0])}
        out = self._call(self._loaded.signatures["serving_default"], "step", frame=tf.constant(frame),
                         state=tf.constant(np.asarray(state, np.float32)), **heard)
        return out["next_frame"].numpy(), out["state"].numpy()


@functools.lru_cache(maxsize=16)
def _encoder(version_dir):
    return Encoder(version_dir)


@functools.lru_cache(maxsize=16)
def _decoder(version_dir, precision="auto"):
    return Decoder(version_dir, precision)


@functools.lru_cache(maxsize=16)
def _sequence_model(version_dir):
    return SequenceModel(version_dir)


def resolve_encoder(path):
    """The encoder to encode with: a version directory as given; from a root (or a saved_models root), the
    newest whose training also exported its decoder beside it (`<root>/../decoder`, paired as by
    `resolve_pair`), so that an encoder left by a training killed before its decoder export is not taken."""
    root = _root(path, "encoder", ENCODER)
    if is_version(root):
        return root
    decoders = os.path.join(os.path.dirname(os.path.abspath(root)), DECODER)
    if not versions(decoders):
        return resolve(root, "encoder")
    return resolve_pair(root, decoders)[0]


def load_encoder(path):
    return _encoder(os.path.abspath(resolve(path, "encoder", ENCODER)))


def load_decoder(path, precision="auto"):
    return _decoder(os.path.abspath(resolve(path, "decoder", DECODER)), precision)


def sequence_model_dir(path):
    """The version directory (absolute) `load_sequence_model(path)` loads: found without loading it."""
    return os.path.abspath(resolve(path, "sequence model", LSTM))


def load_sequence_model(path):
    return _sequence_model(sequence_model_dir(path))


def encode_frames(encoder_dir, frames_uint8, batch_size=500, progress=False):
    """uint8 frames `[N, H, W, C]` -> float32 latents `[N, D]` with the encoder at `encoder_dir`."""
    return load_encoder(encoder_dir)(frames_uint8, batch_size, progress)


def decode_latents(decoder_dir, latents, batch_size=500, progress=False, precision="auto"):
    """float latents `[N, D]` -> uint8 frames `[N, H, W, C]` with the decoder at `decoder_dir` (precision: as
    `Decoder`'s)."""
    return load_decoder(decoder_dir, precision)(latents, batch_size, progress)


def rollout(model_dir, seed_frames, num_frames, temperature=None, noise=None, random_seed=0, music=None):
    """`SequenceModel.rollout` of the model at `model_dir`; temperature/noise default to its recipe."""
    return load_sequence_model(model_dir).rollout(seed_frames, num_frames, temperature, noise, random_seed, music)


@dataclasses.dataclass(frozen=True)
class Models:
    """What a dance is made with: the sequence model, the decoder, and (to seed from frames) the encoder."""
    lstm: SequenceModel
    decoder: Decoder
    encoder: Encoder = None


def model_dirs(model_dir="saved_models", lstm=None, decoder=None, encoder=None, need_encoder=False,
               allow_mismatch=False):
    """(lstm_dir, decoder_dir, encoder_dir or None), absolute: the versions `load_models` loads, picked from
    the exports' records alone, so that a mismatch is refused before TensorFlow is imported.

    The encoder (when needed) and decoder are those of the autoencoder training the sequence model
    learnt from (`pick`); a part given that comes from another training is refused unless
    `allow_mismatch`. A sequence model without that record gets an encoder and decoder paired from
    one training, the newest."""
    lstm_dir = sequence_model_dir(lstm or model_dir)
    training = learnt_from(record(lstm_dir))
    if training is not None and not allow_mismatch:
        learner = f"the sequence model {lstm_dir} (trained on its latents)"
        decoder_dir = pick(decoder or model_dir, "decoder", DECODER, training, bool(decoder), learner)
        encoder_dir = need_encoder and pick(encoder or model_dir, "encoder", ENCODER, training, bool(encoder), learner)
    elif need_encoder:
        encoder_dir, decoder_dir = resolve_pair(encoder or model_dir, decoder or model_dir)
    else:
        encoder_dir, decoder_dir = None, resolve(decoder or model_dir, "decoder", DECODER)
    return lstm_dir, os.path.abspath(decoder_dir), os.path.abspath(encoder_dir) if need_encoder else None


def load_models(model_dir="saved_models", lstm=None, decoder=None, encoder=None, need_encoder=False,
                allow_mismatch=False, decode_precision="auto"):
    """`Models` from a saved_models root, each part overridable by a root or version directory: the
    versions `model_dirs` picks. decode_precision: `Decoder`'s precision."""
    lstm_dir, decoder_dir, encoder_dir = model_dirs(model_dir, lstm, decoder, encoder, need_encoder, allow_mismatch)
    return Models(_sequence_model(lstm_dir), _decoder(decoder_dir, decode_precision),
                  _encoder(encoder_dir) if need_encoder else None)
