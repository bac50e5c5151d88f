"""Where the dancer is on the stage, kept apart from the pose.

Real footage differs from the paper's video most in that dancers travel across the frame and
change apparent size. An autoencoder that must encode where the figure is as well as its pose
spends its latent on both, and an LSTM rolling out such latents tends to loop in one place.
With staging, each frame's silhouette box (centre x, centre y, height, as fractions of the
frame) is measured, the pose is drawn centred at a fixed height for the autoencoder, and the
box rides along as three more latent dimensions that the LSTM models together with the pose;
the decoder puts the decoded pose back where the box says.

Everything is a Keras layer built from Keras ops, so staged encoders and decoders export as
ordinary SavedModels (`frames -> latent [D + 3]`, `latent [D + 3] -> frames`) and nothing
downstream changes.
"""

import keras
from keras import layers, ops

BOX_DIMS = 3
TARGET = 0.8      # the centred silhouette's height, as a fraction of the frame's
QUANTILE = 0.02   # rows of foreground mass below/above these quantiles are ignored (stray pixels)
MIN_HEIGHT, MAX_HEIGHT = 0.1, 1.5
EMPTY = 1e-3      # frames with less foreground mass than this (in pixels) keep the identity box


def measure(frames):
    """`frames` [B, H, W, C] in [0, 1] -> box [B, 3]: centre x and y (mass centroid across, middle of
    the mass's rows down) and height (rows between the 2% and 98% quantiles of mass), over W, H, H."""
    h, w = frames.shape[1], frames.shape[2]
    mass = ops.mean(ops.cast(frames, "float32"), axis=-1)
    rows, cols = ops.sum(mass, axis=2), ops.sum(mass, axis=1)
    total = ops.sum(rows, axis=1)
    safe = ops.maximum(total, EMPTY)
    cx = ops.sum(cols * ops.arange(w, dtype="float32"), axis=1) / safe
    cum = ops.cumsum(rows, axis=1) / safe[:, None]
    top = ops.sum(ops.cast(cum < QUANTILE, "float32"), axis=1)
    bottom = ops.sum(ops.cast(cum < 1.0 - QUANTILE, "float32"), axis=1)
    empty = total < EMPTY
    box = ops.stack([
        ops.where(empty, (w - 1) / 2, cx) / w,
        ops.where(empty, (h - 1) / 2, (top + bottom) / 2) / h,
        ops.where(empty, TARGET, ops.maximum(bottom - top + 1, 2.0) / h)], axis=1)
    return ops.stop_gradient(box)


def _transform(box, h, w, to_centre):
    """Projective transforms (output pixel -> input pixel) between the frame and the centred pose."""
    cx = ops.clip(box[:, 0], -0.25, 1.25) * w
    cy = ops.clip(box[:, 1], -0.25, 1.25) * h
    s = TARGET / ops.clip(box[:, 2], MIN_HEIGHT, MAX_HEIGHT)
    x0, y0 = (w - 1) / 2, (h - 1) / 2
    zero = ops.zeros_like(s)
    if to_centre:
        return ops.stack([1 / s, zero, cx - x0 / s, zero, 1 / s, cy - y0 / s, zero, zero], axis=1)
    return ops.stack([s, zero, x0 - cx * s, zero, s, y0 - cy * s, zero, zero], axis=1)


def centre(frames, box):
    """The pose of each frame, centred and scaled to `TARGET` of the frame height."""
    transform = _transform(box, frames.shape[1], frames.shape[2], to_centre=True)
    return ops.image.affine_transform(frames, transform, interpolation="bilinear")


def place(posed, box):
    """The inverse of `centre`: each centred pose put back where its box says."""
    transform = _transform(box, posed.shape[1], posed.shape[2], to_centre=False)
    return ops.image.affine_transform(posed, transform, interpolation="bilinear")


@keras.saving.register_keras_serializable(package="tf_dance")
class StageBox(layers.Layer):
    """frames -> their silhouette boxes [B, 3] (see `measure`)."""

    def call(self, frames):
        return measure(frames)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], BOX_DIMS)


@keras.saving.register_keras_serializable(package="tf_dance")
class Restage(layers.Layer):
    """[images, box] -> the poses centred (`to_centre`), or centred poses put back where the box says."""

    def __init__(self, to_centre, **kwargs):
        super().__init__(**kwargs)
        self.to_centre = bool(to_centre)

    def call(self, inputs):
        images, box = inputs
        return (centre if self.to_centre else place)(images, box)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "to_centre": self.to_centre}


@keras.saving.register_keras_serializable(package="tf_dance")
class Columns(layers.Layer):
    """Columns `start:stop` of a [B, D] tensor (a slice that, unlike a Lambda layer, loads in safe mode)."""

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[:, self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


def staged_encoder(encoder):
    """frames -> [the encoder's latent of the centred pose, box]: `latent` [B, D + 3]."""
    frames = keras.Input(encoder.input_shape[1:], name="frames")
    box = StageBox(name="stage_box")(frames)
    posed = Restage(to_centre=True, name="centre")([frames, box])
    latent = layers.Concatenate(name="staged_latent", dtype="float32")([encoder(posed), box])
    return keras.Model(frames, latent, name="staged_encoder")


def staged_decoder(decoder):
    """`latent` [B, D + 3] -> the decoded pose put back in its place on the stage."""
    d = decoder.input_shape[-1]
    latent = keras.Input((d + BOX_DIMS,), name="latent")
    posed = decoder(Columns(0, d, name="pose")(latent))
    frames = Restage(to_centre=False, name="place")([posed, Columns(d, d + BOX_DIMS, name="box")(latent)])
    return keras.Model(latent, frames, name="staged_decoder")


def centre_frames(frames, batch_size=1000):
    """uint8 frames [N, H, W, C] -> their centred poses, uint8: what a staged autoencoder trains on."""
    import numpy as np
    out = np.empty_like(frames)
    for i in range(0, len(frames), batch_size):
        x = frames[i:i + batch_size].astype(np.float32) / 255.0
        out[i:i + batch_size] = np.clip(np.round(np.asarray(centre(x, measure(x))) * 255.0), 0, 255)
    return out
