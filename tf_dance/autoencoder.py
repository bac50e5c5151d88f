"""The convolutional autoencoder of section 3.1: a frame <-> a 128-d latent vector.

Four levels of convolution + 2x2 max pooling take a 54x96 frame down to 4x6; a dense layer
makes the latent. The decoder mirrors it: dense to 4x6x32, then four levels of nearest-neighbour
upsampling + convolution back to 54x96, a last convolution to logits and a sigmoid.

The encoder and decoder are separate Keras models (the LSTM works between them); training
joins them into one model whose output is the decoder's logits, so the loss can be the
numerically stable sigmoid cross-entropy of the TF1 code the paper adapted.
"""

import uuid

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from tf_dance import savedmodels

LEVELS = 4


@keras.saving.register_keras_serializable(package="tf_dance")
class ResizeNearestTF1(layers.Layer):
    """Nearest-neighbour resize to a fixed size with TF1's pixel mapping, as an index gather.

    `tf.compat.v1.image.resize_nearest_neighbor` (align_corners=False, half_pixel_centers=False)
    reads source pixel floor(dst * in / out). Keras's `Resizing` uses half-pixel centres and picks
    different pixels for the odd sizes here (4->7, 14->27). A gather reproduces the TF1 op
    exactly and, unlike the resize op, has a gradient that XLA can compile on CPU.
    """

    def __init__(self, height, width, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)

    @staticmethod
    def source_indices(in_size, out_size):
        """TF1's legacy scaler, in float32 like the kernel: min(floor(dst * (in/out)), in-1)."""
        scale = np.float32(in_size) / np.float32(out_size)
        src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int32)
        return np.minimum(src, in_size - 1)

    def call(self, x):
        rows = self.source_indices(x.shape[1], self.height)
        cols = self.source_indices(x.shape[2], self.width)
        return ops.take(ops.take(x, rows, axis=1), cols, axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


def level_sizes(height, width, levels=LEVELS):
    """Spatial size entering each encoder level, then the bottleneck: 54x96 ... 7x12, 4x6."""
    sizes = [(height, width)]
    for _ in range(levels):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def check_filters(filters):
    filters = [int(f) for f in filters]
    if len(filters) != LEVELS or min(filters) < 1:
        raise ValueError(f"filters must be {LEVELS} positive integers (one per level), got {filters}")
    return filters


CODE_ACTIVATIONS = ("linear", "relu")
DENSE_INITS = ("keras", "tf1")
_TF1_STDDEV, _TF1_BIAS = 0.1, 0.1


def dense_initializers(dense_init):
    """Kernel and bias initialisers of the two dense layers.

    keras: Glorot uniform, zero bias (Keras's defaults, the port's reading). tf1: the first author's
    TF1 autoencoder, `tf.truncated_normal(stddev=0.1)` (redrawn beyond 2 standard deviations) and
    biases of 0.1.
    """
    if dense_init == "keras":
        return dict(kernel_initializer="glorot_uniform", bias_initializer="zeros")
    if dense_init == "tf1":
        return dict(kernel_initializer=keras.initializers.TruncatedNormal(stddev=_TF1_STDDEV),
                    bias_initializer=keras.initializers.Constant(_TF1_BIAS))
    raise ValueError(f"dense_init must be one of {DENSE_INITS}, got {dense_init!r}")


def _code_activation(code_activation):
    if code_activation not in CODE_ACTIVATIONS:
        raise ValueError(f"code_activation must be one of {CODE_ACTIVATIONS}, got {code_activation!r}")
    return None if code_activation == "linear" else code_activation


def build_encoder(height, width, channels, filters, latent_dim=128, dtype=None, code_activation="linear",
                  dense_init="keras"):
    """frames float32 [N, H, W, C] in [0, 1] -> latent [N, latent_dim] (always float32).

    dtype: a Keras dtype policy for the hidden layers, e.g. "mixed_bfloat16" for training.
    code_activation: linear (the port's reading: the paper names no activation for its dense code)
    or relu (the first author's TF1 autoencoder: the code is never negative).
    dense_init: see `dense_initializers`.
    """
    filters = check_filters(filters)
    activation = _code_activation(code_activation)
    frames = keras.Input((height, width, channels), name="frames")
    x = frames
    for level, f in enumerate(filters, 1):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{level}", dtype=dtype)(x)
        x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"pool{level}", dtype=dtype)(x)
    x = layers.Flatten(name="flatten", dtype=dtype)(x)
    latent = layers.Dense(latent_dim, activation=activation, name="latent", dtype="float32",
                          **dense_initializers(dense_init))(x)
    return keras.Model(frames, latent, name="encoder")


def build_decoder(height, width, channels, filters, latent_dim=128, dtype=None, dense_init="keras",
                  extra_conv=False):
    """latent [N, latent_dim] -> frames [N, H, W, C] in [0, 1]; the layer named `logits` is pre-sigmoid.

    dtype: as for `build_encoder`; the logits and frames stay float32. The dense expansion is ReLU in
    both readings (the port's and the first author's code). dense_init: see `dense_initializers`.
    extra_conv: one more 3x3 ReLU convolution (filters[0] channels, named `extra_conv`) at full
    resolution before the logits, as in the first author's code.
    """
    filters = check_filters(filters)
    sizes = level_sizes(height, width)
    bottom_h, bottom_w = sizes[-1]
    latent = keras.Input((latent_dim,), name="latent")
    x = layers.Dense(bottom_h * bottom_w * filters[-1], activation="relu", name="expand", dtype=dtype,
                     **dense_initializers(dense_init))(latent)
    x = layers.Reshape((bottom_h, bottom_w, filters[-1]), name="unflatten", dtype=dtype)(x)
    for level in reversed(range(LEVELS)):
        h, w = sizes[level]
        x = ResizeNearestTF1(h, w, name=f"upsample{level + 1}", dtype=dtype)(x)
        x = layers.Conv2D(filters[level], 3, padding="same", activation="relu",
                          name=f"deconv{level + 1}", dtype=dtype)(x)
    if extra_conv:
        x = layers.Conv2D(filters[0], 3, padding="same", activation="relu", name="extra_conv", dtype=dtype)(x)
    logits = layers.Conv2D(channels, 3, padding="same", name="logits", dtype="float32")(x)
    frames = layers.Activation("sigmoid", name="frames", dtype="float32")(logits)
    return keras.Model(latent, frames, name="decoder")


def build_autoencoder(encoder, decoder):
    """Joins the two models for training: frames -> decoder logits (weights shared with both)."""
    to_logits = keras.Model(decoder.inputs, decoder.get_layer("logits").output, name="decoder_logits")
    frames = keras.Input(encoder.input_shape[1:], name="frames")
    return keras.Model(frames, to_logits(encoder(frames)), name="autoencoder")


@keras.saving.register_keras_serializable(package="tf_dance")
def sigmoid_mse(y_true, logits):
    """Mean squared error of the decoded image (sigmoid of the logits), the --loss=mse option."""
    return ops.mean(ops.square(ops.sigmoid(logits) - y_true), axis=(1, 2, 3))


@keras.saving.register_keras_serializable(package="tf_dance")
def sigmoid_xent(y_true, logits):
    """Per-frame mean sigmoid cross-entropy on logits, as tf.nn.sigmoid_cross_entropy_with_logits."""
    loss = ops.maximum(logits, 0.0) - logits * y_true + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.mean(loss, axis=(1, 2, 3))


LOSSES = {"xent": sigmoid_xent, "mse": sigmoid_mse}


def frame_iou(true, pred):
    """Per-frame foreground IoU of two boolean batches `[N, ...]` (the frames cut at 0.5, or logits
    at 0); a frame empty in both counts as 1. Takes tensors or numpy arrays, returns a tensor."""
    true, pred = ops.cast(true, "float32"), ops.cast(pred, "float32")
    axes = tuple(range(1, len(true.shape)))
    inter = ops.sum(true * pred, axis=axes)
    union = ops.sum(ops.maximum(true, pred), axis=axes)
    return ops.where(union > 0, inter / ops.maximum(union, 1.0), 1.0)


# ---- SavedModel export ----

def training_record():
    """The record both halves of one training carry in their exports' `tf_dance.json`: a reader
    pairing an encoder with a decoder refuses two different ids (`savedmodels.resolve_pair`)."""
    return {"training_id": uuid.uuid4().hex}


# Rows of a 3x3 kernel read after a 2x nearest upsampling, folded onto the source grid: output phase a
# (even or odd row) reads source rows i-1, i (a=0) or i, i+1 (a=1), i.e. taps 0, 1 or 1, 2 of a 3x3 window.
_FOLD = np.float32([[[1, 0, 0], [0, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 0], [0, 0, 1]]])


def _phase_taps():
    """taps[e, f, a, b, dy, dx, p, q] = 1 where input phase (a, b) at offset (e-1, f-1) of the half-resolution grid
    is tap (dy, dx) of a full-resolution 3x3 kernel for output phase (p, q)."""
    taps = np.zeros((3, 3, 2, 2, 3, 3, 2, 2), np.float32)
    for e, f, a, b, p, q in np.ndindex(3, 3, 2, 2, 2, 2):
        dy, dx = 2 * (e - 1) + a - p, 2 * (f - 1) + b - q
        if abs(dy) <= 1 and abs(dx) <= 1:
            taps[e, f, a, b, dy + 1, dx + 1, p, q] = 1
    return taps


def _folded_decoder(decoder, compute=None):
    """The plain decoder's function with its last upsampling folded away, or None for other models.

    Upsampling by 2 and then a 3x3 convolution is, for each of the four output phases (even/odd row and
    column), a convolution of the half-resolution input; every later full-resolution convolution acts
    on the four phases as channels. So the top level runs at 27x48 with no 54x96 intermediate, and the
    frames appear only in the last `depth_to_space`: the same frames (to float rounding) at about 1.3x
    the speed on a CPU. Exports serve this function.

    compute: None (float32) or "bfloat16": every layer computes in bfloat16 from the same float32
    weights (cast in the graph), as a decoder trained with `--precision=mixed_bfloat16` computed while
    it learnt; the logits' bias, the sigmoid and the frames stay float32.
    """
    names = [layer.name for layer in decoder.layers]
    if not (names[:2] == ["latent", "expand"] and names[-2:] == ["logits", "frames"] and "upsample1" in names):
        return None
    up = decoder.get_layer("upsample1")
    top = names[names.index("upsample1") + 1:-1]
    h, w = up.input.shape[1:3]
    convs = [decoder.get_layer(n) for n in top]
    if (up.height, up.width) != (2 * h, 2 * w) or any(
            not isinstance(c, layers.Conv2D) or c.kernel_size != (3, 3) or c.padding != "same"
            or c.compute_dtype != "float32" for c in convs):
        return None
    dtype = tf.bfloat16 if compute == "bfloat16" else tf.float32
    below = _cast_below(decoder, names[:names.index("upsample1")], dtype)
    taps = _phase_taps()

    def frames(z):
        x = below(z)
        for conv in convs:
            if conv is convs[0]:  # it reads the upsampled level: its taps fold the upsampling away
                kernel = tf.einsum("aed,bfg,dgio->efiabo", _FOLD, _FOLD, conv.kernel)
                kernel = tf.reshape(kernel, [3, 3, kernel.shape[2], -1])
            else:  # it reads the four phases as channels
                kernel = tf.einsum("efabyxpq,yxio->efabipqo", taps, conv.kernel)
                kernel = tf.reshape(kernel, [3, 3, 4 * conv.kernel.shape[2], -1])
            x = tf.nn.conv2d(x, tf.cast(kernel, dtype), 1, "SAME")
            bias = tf.tile(conv.bias, [4])
            if conv is convs[-1]:  # the logits' bias and the sigmoid in float32
                x = conv.activation(tf.cast(x, tf.float32) + bias)
            else:
                x = conv.activation(x + tf.cast(bias, dtype))
        return tf.nn.depth_to_space(tf.sigmoid(x), 2)

    return frames


def _cast_below(decoder, names, dtype):
    """The decoder's layers `names` (dense, reshape, upsampling and 3x3 convolutions) as one function
    computing in `dtype` from their float32 weights; the plain Keras layers for float32."""
    if dtype == tf.float32:
        return keras.Model(decoder.input, decoder.get_layer(names[-1]).output)
    stack = [decoder.get_layer(n) for n in names[1:]]

    def below(z):
        x = tf.cast(z, dtype)
        for layer in stack:
            if isinstance(layer, layers.Dense):
                x = layer.activation(tf.matmul(x, tf.cast(layer.kernel, dtype)) + tf.cast(layer.bias, dtype))
            elif isinstance(layer, layers.Conv2D):
                x = layer.activation(tf.nn.conv2d(x, tf.cast(layer.kernel, dtype), 1, "SAME")
                                     + tf.cast(layer.bias, dtype))
            else:  # reshape, upsampling: `call` itself, as `__call__` would cast to the layer's float32
                x = layer.call(x)
        return x

    return below


def _export(model, input_name, output_name, directory, record, fn=None, more=None):
    """serving_default (`fn`, or the model) and the signatures `more` ({name: fn}), all `input_name` ->
    `output_name`."""
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name=input_name)
    archive = keras.export.ExportArchive()
    archive.track(model)
    def endpoint(f):
        return lambda x: {output_name: f(x)}

    for name, f in {"serving_default": fn or (lambda x: model(x, training=False)), **(more or {})}.items():
        archive.add_endpoint(name, endpoint(f), input_signature=[spec])
    archive.write_out(directory, verbose=False)
    if record is not None:
        savedmodels.write_record(directory, record)


def export_encoder(encoder, directory, record=None):
    """serving_default: `frames` float32 [None, H, W, C] in [0, 1] -> `latent` [None, D]; `record`
    (see `training_record`) goes to tf_dance.json."""
    _export(encoder, "frames", "latent", directory, record)


def export_decoder(decoder, directory, record=None):
    """serving_default: `latent` float32 [None, D] -> `frames` [None, H, W, C] in [0, 1]; `record` as above.
    A plain decoder serves `_folded_decoder`'s faster graph of the same function, and also has the signature
    `savedmodels.DECODE_BFLOAT16`: the same inputs and outputs computed in bfloat16 (`savedmodels.Decoder`
    uses it where the CPU has bfloat16)."""
    folded = _folded_decoder(decoder)
    more = {savedmodels.DECODE_BFLOAT16: _folded_decoder(decoder, "bfloat16")} if folded else None
    _export(decoder, "latent", "frames", directory, record, folded, more)
