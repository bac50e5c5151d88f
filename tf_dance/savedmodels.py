"""The one client for exported models: find a version, load it once, encode, decode, step, roll out.

Exports live in TF Serving's layout, `<root>/<name>/<version>/`, each with a `tf_dance.json`
record beside `saved_model.pb`. A model argument may be a version directory, a `<name>` root
(its latest complete version is used) or, where a name is known, the `saved_models` root
holding `<name>/`. A version folder is read as TF Serving reads it, as a number: `007/` is
version 7 (two folders for one number are refused as ambiguous); a folder without
`saved_model.pb` is an unfinished export and is skipped. Each version directory is loaded once
per process. An autoencoder's encoder and decoder carry the id of the training that made
them, and a pair from two trainings is refused. Every failure is a `cli.UserError` that
names the model directory. TensorFlow is imported only when a model is loaded.
"""

import dataclasses
import functools
import json
import os
import re

import numpy as np

from tf_dance import cli

METADATA = "tf_dance.json"
ENCODER, DECODER, LSTM = "encoder", "decoder", "dance_lstm"  # the default folder names under saved_models
STREAM_CHUNK = 4096  # frames per continuation call when a rollout is streamed
_DIGITS = re.compile(r"^\d+$")


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
        if _DIGITS.match(name) and is_version(full):
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
    if _DIGITS.match(os.path.basename(os.path.normpath(path))):
        raise cli.UserError(f"{what} at {path} is incomplete (no saved_model.pb)")
    found = version_dirs(path)
    if not found:
        raise cli.UserError(f"no complete {what} version found under {path}")
    return found[::-1]


def resolve(path, what, name=None):
    """A version directory from a version directory, a model root or (with `name`) a saved_models root."""
    return candidates(path, what, name)[0]


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


# ---- loading once


def _tf():
    import tensorflow as tf
    return tf


def _first_line(error):
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]


@functools.lru_cache(maxsize=16)
def _load(version_dir):
    tf = _tf()
    record(version_dir)
    try:
        loaded = tf.saved_model.load(version_dir)
    except Exception as e:  # noqa: BLE001 (protobuf, OpError, OSError...: any failure is a damaged model)
        raise cli.UserError(f"the model at {version_dir} is damaged or not a SavedModel "
                            f"({type(e).__name__}: {_first_line(e)})") from None
    return loaded


def load(model_dir, what="model", name=None):
    """The loaded SavedModel (plain `tf.saved_model.load`) of a version, loaded once per process."""
    return _load(os.path.abspath(resolve(model_dir, what, name)))


def _signature(version_dir, what, key, inputs, outputs):
    loaded = _load(version_dir)
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
    bar = cli.Progress(n, unit="frame") if progress else None
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)
        if bar is not None:
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


class Decoder:
    """float latents `[N, D]` -> uint8 frames `[N, H, W, C]`."""

    def __init__(self, version_dir):
        tf = _tf()
        self.path = version_dir
        self.record = record(version_dir)
        signature, specs = _signature(version_dir, "decoder", "serving_default", ["latent"], ["frames"])
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


class SequenceModel:
    """An exported dance LSTM/FNN: its recorded rollout recipe, the stateless step and the rollout."""

    def __init__(self, version_dir):
        self.path = version_dir
        self.record = record(version_dir)
        self._rollout, specs = _signature(version_dir, "sequence model", "rollout", ["seed", "num_frames"],
                                          ["frames"])
        self.dim = specs["seed"].shape[-1]
        loaded = _load(version_dir)
        self._streams = "prime" in loaded.signatures and "continue_rollout" in loaded.signatures
        self._loaded = loaded
        recipe = self.record.get("rollout") or {}
        self.recipe = {"temperature": float(recipe.get("temperature", 1.0)), "noise": float(recipe.get("noise", 0.0))}
        # sampling controls baked into the graph (rollout.SAMPLING): recorded, not passed
        self.controls = {k: v for k, v in recipe.items() if k not in self.recipe}
        self.block = int(self.record.get("block", 32))

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

    def rollout(self, seed_frames, num_frames, temperature=None, noise=None, random_seed=0):
        """`num_frames` latents after priming on `seed_frames` (`[T, D]` or `[B, T, D]`), in one call.

        Returns `[num_frames, D]` (or `[B, num_frames, D]`) float32; temperature/noise default to the
        model's recipe."""
        tf = _tf()
        seed, single = self._check(seed_frames, num_frames, random_seed)
        temperature, noise = self.sampling(temperature, noise)
        frames = self._rollout(seed=tf.constant(seed), num_frames=tf.constant(int(num_frames), tf.int32),
                               temperature=tf.constant(temperature, tf.float32), noise=tf.constant(noise, tf.float32),
                               random_seed=tf.constant(int(random_seed), tf.int32))["frames"].numpy()
        return frames[0] if single else frames

    def stream(self, seed_frames, num_frames, temperature=None, noise=None, random_seed=0, chunk=STREAM_CHUNK):
        """The same frames as `rollout`, yielded in pieces of about `chunk` frames `[B, n, D]`, so that a
        long dance needs memory for one piece only. Exports without the continuation signatures
        (made before they existed) are rolled out in one piece."""
        tf = _tf()
        seed, _ = self._check(seed_frames, num_frames, random_seed)
        temperature, noise = self.sampling(temperature, noise)
        if not self._streams:
            yield self.rollout(seed, num_frames, temperature, noise, random_seed)
            return
        t, n, s = (tf.constant(temperature, tf.float32), tf.constant(noise, tf.float32),
                   tf.constant(int(random_seed), tf.int32))
        primed = self._loaded.signatures["prime"](seed=tf.constant(seed), temperature=t, random_seed=s)
        yield primed["frame"].numpy()[:, None]
        state, done = primed["state"], 1
        step = max(self.block, chunk // self.block * self.block)
        while done < num_frames:
            want = min(step, -(-(num_frames - done) // self.block) * self.block)
            out = self._loaded.signatures["continue_rollout"](
                state=state, start=tf.constant(done, tf.int32), num_frames=tf.constant(want, tf.int32),
                temperature=t, noise=n, random_seed=s)
            state = out["state"]
            frames = out["frames"].numpy()[:, :num_frames - done]
            done += frames.shape[1]
            yield frames

    def initial_state(self, batch_size):
        tf = _tf()
        return self._loaded.signatures["initial_state"](batch_size=tf.constant(int(batch_size), tf.int32))["state"]

    def step(self, frame, state):
        """One stateless step: (next_frame, state) for raw latents `frame` [B, D] and the caller's state."""
        tf = _tf()
        out = self._loaded.signatures["serving_default"](frame=tf.constant(np.asarray(frame, np.float32)),
                                                         state=tf.constant(np.asarray(state, np.float32)))
        return out["next_frame"].numpy(), out["state"].numpy()


@functools.lru_cache(maxsize=16)
def _encoder(version_dir):
    return Encoder(version_dir)


@functools.lru_cache(maxsize=16)
def _decoder(version_dir):
    return Decoder(version_dir)


@functools.lru_cache(maxsize=16)
def _sequence_model(version_dir):
    return SequenceModel(version_dir)


def load_encoder(path):
    return _encoder(os.path.abspath(resolve(path, "encoder", ENCODER)))


def load_decoder(path):
    return _decoder(os.path.abspath(resolve(path, "decoder", DECODER)))


def load_sequence_model(path):
    return _sequence_model(os.path.abspath(resolve(path, "sequence model", LSTM)))


def encode_frames(encoder_dir, frames_uint8, batch_size=500, progress=False):
    """uint8 frames `[N, H, W, C]` -> float32 latents `[N, D]` with the encoder at `encoder_dir`."""
    return load_encoder(encoder_dir)(frames_uint8, batch_size, progress)


def decode_latents(decoder_dir, latents, batch_size=500, progress=False):
    """float latents `[N, D]` -> uint8 frames `[N, H, W, C]` with the decoder at `decoder_dir`."""
    return load_decoder(decoder_dir)(latents, batch_size, progress)


def rollout(model_dir, seed_frames, num_frames, temperature=None, noise=None, random_seed=0):
    """`SequenceModel.rollout` of the model at `model_dir`; temperature/noise default to its recipe."""
    return load_sequence_model(model_dir).rollout(seed_frames, num_frames, temperature, noise, random_seed)


@dataclasses.dataclass(frozen=True)
class Models:
    """What a dance is made with: the sequence model, the decoder, and (to seed from frames) the encoder."""
    lstm: SequenceModel
    decoder: Decoder
    encoder: Encoder = None


def load_models(model_dir="saved_models", lstm=None, decoder=None, encoder=None, need_encoder=False):
    """`Models` from a saved_models root, each part overridable by a root or version directory; the
    encoder (when needed) and decoder are paired from one training."""
    lstm_model = load_sequence_model(lstm or model_dir)
    if need_encoder:
        encoder_dir, decoder_dir = resolve_pair(encoder or model_dir, decoder or model_dir)
        return Models(lstm_model, _decoder(os.path.abspath(decoder_dir)), _encoder(os.path.abspath(encoder_dir)))
    return Models(lstm_model, load_decoder(decoder or model_dir))
