"""Frames -> latent vectors with an exported encoder (and back with a decoder).

    python -m tf_dance.encode --data=runs/dancer.npz --encoder=saved_models/encoder --out=latents.npy

Writes float32 `[N, 128]` in frame order: the paper's `.npy` that the LSTM trains on.
`encode_frames` / `decode_latents` are the fast path other scripts call: the SavedModel's
signature is wrapped, together with the uint8 <-> float conversion, in one `tf.function` traced
once for any batch size, and the loaded model is cached per version directory.
"""

import functools

import numpy as np
import tensorflow as tf
from absl import app, flags

from tf_dance import cli, data


def _load(model_dir, what, input_name, output_name):
    """(serving signature, expected input shape without the batch) of the SavedModel at `model_dir`."""
    return _load_version(cli.resolve_model_dir(model_dir, what), what, input_name, output_name)


@functools.lru_cache(maxsize=8)
def _load_version(path, what, input_name, output_name):
    try:
        loaded = tf.saved_model.load(path)
        signature = loaded.signatures["serving_default"]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
        raise cli.UserError(f"{what} at {path} could not be loaded ({str(e).splitlines()[0]})") from None
    specs = signature.structured_input_signature[1]
    if input_name not in specs or output_name not in signature.structured_outputs:
        raise cli.UserError(f"{path} is not a SavedModel {what}: its serving_default maps "
                            f"{sorted(specs)} -> {sorted(signature.structured_outputs)}, "
                            f"not {input_name!r} -> {output_name!r}")
    signature.saved_model = loaded  # the signature only weakly refers to the model's variables
    return signature, tuple(specs[input_name].shape[1:])


def _batches(n, batch_size, progress):
    bar = None
    if progress:
        import keras
        bar = keras.utils.Progbar(n, unit_name="frame")
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)
        if bar is not None:
            bar.update(min(n, start + batch_size))


def encode_frames(encoder_dir, frames_uint8, batch_size=500, progress=False):
    """uint8 frames `[N, H, W, C]` -> float32 latents `[N, D]`, using the SavedModel at `encoder_dir`
    (a version directory, or a root whose latest complete version is used)."""
    signature, shape = _load(encoder_dir, "encoder", "frames", "latent")
    frames = np.asarray(frames_uint8)
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise cli.UserError(f"frames must be uint8 [N, H, W, C], got {frames.dtype} {frames.shape}")
    if frames.shape[1:] != shape:
        raise cli.UserError(f"frames are {frames.shape[2]}x{frames.shape[1]}x{frames.shape[3]} (WxHxC) but the "
                            f"encoder expects {shape[1]}x{shape[0]}x{shape[2]}; re-run prepare_video at that size "
                            "or train an autoencoder on this data")
    fn = _compiled(signature, "encode")
    out = [fn(tf.constant(frames[a:b])).numpy() for a, b in _batches(len(frames), batch_size, progress)]
    if not out:
        return np.zeros((0, signature.structured_outputs["latent"].shape[-1]), np.float32)
    return np.concatenate(out)


def decode_latents(decoder_dir, latents, batch_size=500, progress=False):
    """float latents `[N, D]` -> uint8 frames `[N, H, W, C]` with the SavedModel at `decoder_dir`."""
    signature, shape = _load(decoder_dir, "decoder", "latent", "frames")
    latents = np.asarray(latents, dtype=np.float32)
    if latents.ndim != 2 or latents.shape[1:] != shape:
        raise cli.UserError(f"latents must be [N, {shape[0]}] for this decoder, got {latents.shape}")
    if not np.all(np.isfinite(latents)):
        raise cli.UserError("latents contain NaN or inf")
    fn = _compiled(signature, "decode")
    out = [fn(tf.constant(latents[a:b])).numpy() for a, b in _batches(len(latents), batch_size, progress)]
    if not out:
        return np.zeros((0, *signature.structured_outputs["frames"].shape[1:]), np.uint8)
    return np.concatenate(out)


@functools.lru_cache(maxsize=16)
def _compiled(signature, direction):
    spec = signature.structured_input_signature[1]["frames" if direction == "encode" else "latent"]
    if direction == "encode":
        return tf.function(lambda u8: signature(frames=tf.cast(u8, tf.float32) / 255.0)["latent"],
                           input_signature=[tf.TensorSpec(spec.shape, tf.uint8)])
    return tf.function(lambda z: tf.cast(tf.round(signature(latent=z)["frames"] * 255.0), tf.uint8),
                       input_signature=[tf.TensorSpec(spec.shape, tf.float32)])


FLAGS = flags.FLAGS


def define_flags(fv=FLAGS):
    """Defined only when run as a script, so importing `encode_frames` adds no flags."""
    d = dict(flag_values=fv)
    flags.DEFINE_string("data", None, "Dataset .npz whose frames are encoded.", **d)
    flags.DEFINE_string("encoder", "saved_models/encoder",
                        "Encoder SavedModel: a version directory, or its root (the latest complete version).", **d)
    flags.DEFINE_string("out", None, "Output .npy: float32 [N, latent_dim] in frame order.", **d)
    flags.DEFINE_integer("batch_size", 500, "Frames encoded per call.", lower_bound=1, **d)
    flags.DEFINE_bool("progress", True, "Show a progress bar.", **d)
    flags.register_validator("out", lambda v: v is None or v.endswith(".npy"), message="--out must end in .npy",
                             flag_values=fv)


@cli.main
def main(argv):
    del argv
    if not FLAGS.out:
        raise cli.UserError("no output given (--out=latents.npy)")
    cli.check_output(FLAGS.out, "--out")
    frames, _, extras = data.load_dataset(FLAGS.data)
    latents = encode_frames(FLAGS.encoder, frames, FLAGS.batch_size, progress=FLAGS.progress)
    with cli.atomic_output(FLAGS.out) as tmp:  # the clip ids land just before the latents
        np.save(tmp, latents.astype(np.float32))
        data.save_array(data.latent_clips_path(FLAGS.out), extras["clips"])
    print(f"wrote {FLAGS.out} (and its clip ids, {len(data.clip_bounds(extras['clips']))} clips): "
          f"{latents.shape[0]} x {latents.shape[1]} latents from "
          f"{cli.resolve_model_dir(FLAGS.encoder, 'encoder')}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
