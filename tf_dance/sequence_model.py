"""Next-vector models: the paper's stateful LSTM (sections 3.3-3.4) and its failed FNN baseline (3.2).

Both are Keras models that read raw latents and return a head's parameters in normalised space
(each dimension standardised with the training mean/std, which ride inside the model). Training
and serving do not go through the Keras graph: `Net` reads the same Keras variables and runs
them as a fused, time-major loop with a hand-written backward pass (BPTT whose weight gradients
are one large matmul per layer instead of fifty rank-5 updates), 2.5-3x faster on CPU than
`fit`. The Keras models stay the reference: tests check that `Net` and the exported SavedModel
agree with them step by step.

Heads: `PointHead` (MSE, the paper's) predicts the next normalised vector; `MixtureHead`
(--head=mdn) predicts a diagonal Gaussian mixture over it. Both expose `loss`, `point`
(temperature 0) and `sample`, written in plain TF ops so the exported graph needs no Keras.
"""

import math

import keras
import numpy as np
import tensorflow as tf

MODELS = ("lstm", "fnn")
HEADS = ("mse", "mdn")
INITS = ("charrnn", "keras")
_LOG_SIGMA_RANGE = (-7.0, 3.0)


@keras.saving.register_keras_serializable(package="tf_dance")
class PointHead(keras.layers.Dense):
    """Linear next-vector regression trained with MSE (the paper's head)."""

    noise_size = 0  # a point prediction draws no randomness

    def __init__(self, dim, **kwargs):
        kwargs.pop("units", None)
        super().__init__(dim, **kwargs)
        self.dim = dim

    def loss(self, params, target, weights=None):
        """Mean squared error; `weights`: None or a per-dimension factor `[D]` (a weighted mean)."""
        if weights is None:
            return tf.reduce_mean(tf.square(params - target))
        return tf.reduce_mean(tf.reduce_sum(weights * tf.square(params - target), -1)) / tf.reduce_sum(weights)

    def point(self, params):
        return params

    def sample(self, params, temperature, seed, width=None, normal=None):
        del temperature, seed, width, normal
        return params

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


@keras.saving.register_keras_serializable(package="tf_dance")
class MixtureHead(keras.layers.Dense):
    """Diagonal Gaussian mixture over the next vector: [logits K | means K*D | log stds K*D].

    Unlike MSE, a mixture can put its mass on several distinct next poses instead of their
    average, the failure the paper describes in section 5.2.
    """

    def __init__(self, dim, mixtures, **kwargs):
        kwargs.pop("units", None)
        super().__init__(mixtures * (1 + 2 * dim), **kwargs)
        self.dim, self.mixtures = dim, mixtures

    def split(self, params):
        k, d = self.mixtures, self.dim
        shape = tf.concat([tf.shape(params)[:-1], [k, d]], 0)
        logits = params[..., :k]
        mu = tf.reshape(params[..., k:k + k * d], shape)
        log_sigma = tf.clip_by_value(tf.reshape(params[..., k + k * d:], shape), *_LOG_SIGMA_RANGE)
        return logits, mu, log_sigma

    def loss(self, params, target, weights=None):
        """Negative log-likelihood per dimension (comparable across latent widths).

        weights: None or a per-dimension factor `[D]` on each dimension's log-density inside every
        component (as if that dimension were seen `weight` times), divided by their sum. Without it a
        few dimensions (the stage box's 3 of 131) barely steer which component explains a frame.
        """
        logits, mu, log_sigma = self.split(params)
        z = (target[..., None, :] - mu) * tf.exp(-log_sigma)
        per_dim = -0.5 * z * z - log_sigma - 0.5 * math.log(2 * math.pi)
        total = self.dim if weights is None else tf.reduce_sum(weights)
        log_n = tf.reduce_sum(per_dim if weights is None else weights * per_dim, -1)
        nll = -tf.reduce_logsumexp(tf.nn.log_softmax(logits) + log_n, -1)
        return tf.reduce_mean(nll) / total

    def point(self, params):
        """The mean of the most likely component (the temperature-0 sample)."""
        logits, mu, _ = self.split(params)
        return tf.gather(mu, tf.argmax(logits, -1, output_type=tf.int32), batch_dims=len(params.shape) - 1)

    @property
    def noise_size(self):
        """Standard normals one sample draws: one per component (its choice) and one per dimension."""
        return self.mixtures + self.dim

    def sample(self, params, temperature, seed, width=None, normal=None):
        """Component from softmax(logits / T), then its mean + T * width * std * N(0, 1); T = 0 is `point`.

        width: None (1) or a per-dimension factor `[D]` on the Gaussian's spread only: the component
        choice keeps temperature T, so width < 1 samples as many distinct moves with less jitter, and
        width 0 on a dimension gives the chosen component's mean there (no per-frame noise).
        normal: None (drawn from `seed`) or the `[B, noise_size]` standard normals to sample with, so
        that a caller can correlate them from frame to frame without changing what one frame's sample
        is distributed as.
        """
        logits, mu, log_sigma = self.split(params)
        if normal is None:
            seeds = tf.random.experimental.stateless_split(seed, 2)
            uniform = tf.random.stateless_uniform(tf.shape(logits), seeds[0], minval=1e-20, maxval=1.0)
            gauss = tf.random.stateless_normal(tf.shape(mu[..., 0, :]), seeds[1])
        else:  # the same two draws, made from the given normals (a normal's CDF is uniform)
            uniform = 0.5 * tf.math.erfc(-normal[..., :self.mixtures] / math.sqrt(2.0))
            uniform = tf.clip_by_value(uniform, 1e-20, 1.0 - 1e-7)
            gauss = normal[..., self.mixtures:]
        # Gumbel-max: argmax(logits / T + Gumbel noise) ~ softmax(logits / T); XLA compiles it
        gumbel = -tf.math.log(-tf.math.log(uniform))
        k = tf.argmax(logits + temperature * gumbel, -1, output_type=tf.int32)
        mu_k = tf.gather(mu, k, batch_dims=1)
        sigma_k = tf.gather(tf.exp(log_sigma), k, batch_dims=1)
        spread = temperature if width is None else temperature * width
        return mu_k + spread * sigma_k * gauss

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "mixtures": self.mixtures}


def box_residual(params, frames, dim, mixtures, dims):
    """Head `params` whose means of the last `dims` latent dimensions are the input frame's plus what the
    head predicted (every component's): the head then predicts the stage box's change, not where it is.

    frames: the normalised input frames `[..., dim (+ music)]` the params were predicted from."""
    shift = tf.concat([tf.zeros_like(frames[..., :dim - dims]), frames[..., dim - dims:dim]], -1)
    if not mixtures:
        return params + shift
    k = mixtures
    shift = tf.tile(shift, [1] * (len(shift.shape) - 1) + [k])
    return tf.concat([params[..., :k], params[..., k:k + k * dim] + shift, params[..., k + k * dim:]], -1)


@keras.saving.register_keras_serializable(package="tf_dance")
class BoxResidual(keras.layers.Layer):
    """`box_residual` as a layer of the Keras model: [head params, normalised input frames] -> params.

    Without it a stateful LSTM trained on footage predicted the box almost where the data's mean is,
    whatever box it was given (a change of the input box moved the predicted one by 1-20% of it), so a
    rollout's box stayed near the middle and travelled only as far as the sampling noise took it.

    A box that moves by steps walks without bound, so the layer also carries the stage of the training
    frames (`stage`: the 1st and 99th percentiles of each box dimension, normalised), at whose walls a
    rollout turns the box back (`rollout.ServingModule`); None in models made before it."""

    def __init__(self, dim, mixtures, dims, stage=None, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.mixtures, self.dims = dim, mixtures, dims
        self.stage = None if stage is None else [[float(v) for v in row] for row in stage]

    def call(self, inputs):
        params, frames = inputs
        return box_residual(params, frames, self.dim, self.mixtures, self.dims)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "mixtures": self.mixtures, "dims": self.dims,
                "stage": self.stage}


@keras.saving.register_keras_serializable(package="tf_dance")
class ForgetBias(keras.initializers.Initializer):
    """LSTM bias uniform in +-`scale`, forget-gate quarter set to 1 (char-rnn's; Keras's with scale 0)."""

    def __init__(self, scale=0.0, seed=None):
        self.scale, self.seed = scale, seed

    def __call__(self, shape, dtype=None):
        units = shape[0] // 4
        bias = keras.random.uniform(shape, -self.scale, self.scale, dtype=dtype, seed=self.seed) \
            if self.scale else keras.ops.zeros(shape, dtype=dtype)
        return keras.ops.concatenate([bias[:units], keras.ops.ones((units,), dtype=dtype), bias[2 * units:]])

    def get_config(self):
        return {"scale": self.scale, "seed": self.seed}


def standardizer(train):
    """Per-dimension mean and std of the training latents (std floored so constant dims stay finite)."""
    mean = train.mean(0).astype(np.float32)
    std = train.std(0).astype(np.float32)
    floor = max(1e-3 * float(std.mean()), 1e-6)
    return mean, np.maximum(std, floor).astype(np.float32)


def build_model(kind, dim, mean, std, batch_size=None, *, units=600, num_layers=2, fnn_hidden=128,
                head="mse", mixtures=5, init="charrnn", seed=0, dropout=0.0, music_dim=0, box_residual=0,
                box_stage=None):
    """The Keras model: raw latents in, head parameters (normalised space) out.

    music_dim > 0 (lstm only): each input step is the latent and `music_dim` music features of the
    frame to predict, concatenated (`[B, T, dim + music_dim]`; `mean`/`std` cover both); the head
    still predicts the `dim`-d latent.

    lstm: `[B, T, D]` -> stateful LSTM stack -> head at every step (batch size fixed, as a
    stateful layer needs); `dropout` > 0 adds char-rnn's dropout after every LSTM layer (between
    layers and before the head), active in training only. fnn: `[B, 2, D]` (previous and current
    frame) -> Dense(hidden, relu) -> head, the paper's 256 -> 128 -> 128 baseline.

    box_residual > 0 (lstm only): the head predicts the change of the last `box_residual` dimensions
    (the stage box) from the input frame's (`BoxResidual`); `box_stage` `[2, box_residual]`: the data's
    stage (raw lows and highs of those dimensions) a rollout keeps the box within.
    """
    def initializer(i, fallback):
        if init == "charrnn":  # char-rnn: every weight uniform in +-0.08
            return keras.initializers.RandomUniform(-0.08, 0.08, seed=seed + i)
        return keras.initializers.get({"class_name": fallback, "config": {"seed": seed + i}})

    normalize = keras.layers.Normalization(mean=mean, variance=np.square(std), name="standardize")
    head_init = dict(kernel_initializer=initializer(98, "GlorotUniform"),
                     bias_initializer=initializer(99, "Zeros") if init == "charrnn" else "zeros", name="head")
    out = MixtureHead(dim, mixtures, **head_init) if head == "mdn" else PointHead(dim, **head_init)
    if kind == "lstm":
        inputs = keras.Input(batch_shape=(batch_size, None, dim + music_dim), name="frames")
        x = frames = normalize(inputs)
        for i in range(num_layers):
            x = keras.layers.LSTM(
                units, stateful=True, return_sequences=True, name=f"lstm_{i}",
                kernel_initializer=initializer(2 * i, "GlorotUniform"),
                recurrent_initializer=initializer(2 * i + 1, "Orthogonal"),
                bias_initializer=ForgetBias(0.08 if init == "charrnn" else 0.0, seed=seed + 50 + i),
                unit_forget_bias=False)(x)
            if dropout:
                x = keras.layers.Dropout(dropout, seed=seed + 70 + i, name=f"dropout_{i}")(x)
    elif kind == "fnn":
        if dropout or music_dim or box_residual:
            raise ValueError("dropout, music and the box residual apply to the lstm model only")
        inputs = keras.Input(batch_shape=(batch_size, 2, dim), name="frames")
        x = keras.layers.Flatten()(normalize(inputs))
        x = keras.layers.Dense(fnn_hidden, activation="relu", name="hidden",
                               kernel_initializer=initializer(0, "GlorotUniform"))(x)
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    params = out(x)
    if box_residual:
        if box_stage is not None:  # the layer works on normalised frames
            box_stage = (np.asarray(box_stage, np.float64) - mean[dim - box_residual:dim]) / std[dim - box_residual:dim]
        params = BoxResidual(dim, mixtures if head == "mdn" else 0, box_residual, stage=box_stage,
                             name="box_residual")([params, frames])
    return keras.Model(inputs, params, name=f"dance_{kind}")


def stateful_copy(model, batch_size):
    """The same model (same weights) rebuilt for another fixed batch size."""
    inputs = keras.Input(batch_shape=(batch_size, *model.input_shape[1:]), name="frames")
    copy = keras.models.clone_model(model, input_tensors=inputs)
    copy.set_weights(model.get_weights())
    return copy


def reset_states(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.RNN):
            layer.reset_state()


def make_net(model):
    """The fast functional view of a model built by `build_model`."""
    return (LSTMNet if any(isinstance(l, keras.layers.LSTM) for l in model.layers) else FNNNet)(model)


class Net:
    """A model as pure functions of normalised inputs and an explicit packed state `[B, S]`.

    Explicit state (instead of a stateful layer's variables) keeps concurrent serving requests
    independent and lets training carry state between batches inside one compiled step.
    """

    def __init__(self, model):
        self.model = model
        self.head = model.get_layer("head")
        norm = model.get_layer("standardize")
        self.dim = self.head.dim
        self.mean = np.asarray(norm.input_mean, np.float32).reshape(-1)
        self.std = np.sqrt(np.asarray(norm.input_variance, np.float32)).reshape(-1)
        self.music_dim = len(self.mean) - self.dim  # music features beside the latent in each input step
        self.dropout = next((l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)), 0.0)
        residual = next((l for l in model.layers if isinstance(l, BoxResidual)), None)
        self.box_residual = residual.dims if residual else 0
        # the residual box's stage, normalised: (lows, highs) `[box_residual]` each, or None
        stage = residual.stage if residual else None
        self.box_stage = None if stage is None else tuple(np.asarray(v, np.float32) for v in stage)

    def noise_mask(self):
        """`[dim]`: 1 where a fed frame takes noise (training input noise, rollout noise), 0 on a residual box,
        which is read as it is: noise there would be a step to undo."""
        return tf.constant([1.0] * (self.dim - self.box_residual) + [0.0] * self.box_residual)

    def predict(self, h, frames):
        """The head's params from the last layer's output `h` and the normalised input `frames`."""
        params = self.head(h)
        if self.box_residual:
            k = getattr(self.head, "mixtures", 0)
            params = box_residual(params, frames, self.dim, k, self.box_residual)
        return params

    def normalize(self, raw):
        """Raw latents `[..., D]`, or latents with their music `[..., D + M]`, standardised."""
        width = raw.shape[-1]
        return (raw - self.mean[:width]) / self.std[:width]

    def normalize_music(self, raw):
        return (raw - self.mean[self.dim:]) / self.std[self.dim:]

    def denormalize(self, x):
        return x * self.std[:self.dim] + self.mean[:self.dim]

    def zero_state(self, batch):
        return tf.zeros([batch, self.state_size])

    def drop(self, h, layer, dropout_seed):
        """Layer `layer`'s output `h` with dropout when training (`dropout_seed` [2] given), else `h`.

        Stateless, so a seeded run is repeatable and the step compiles with XLA."""
        if dropout_seed is None or not self.dropout:
            return h
        return tf.nn.experimental.stateless_dropout(
            h, self.dropout, tf.random.experimental.stateless_fold_in(dropout_seed, layer))

    def conditioned_window(self, x, state, ground_truth_steps, condition_steps, dropout_seed=None):
        """Auto-conditioned unroll (Zhou et al. 2018): after every `ground_truth_steps` real inputs,
        `condition_steps` inputs are the model's own previous point prediction, so training
        sees (and learns to recover from) its own errors. Gradients flow through the fed-back
        outputs. The cycle restarts at each window."""
        steps = x.shape[1]
        cycle = ground_truth_steps + condition_steps
        xs = tf.transpose(x, [1, 0, 2])

        def body(t, prev, state, out):
            fed = tf.concat([prev, xs[t][:, self.dim:]], -1) if self.music_dim else prev  # the music stays real
            inp = tf.where(t % cycle < ground_truth_steps, xs[t], fed)
            seed = None if dropout_seed is None else tf.random.experimental.stateless_fold_in(dropout_seed, t)
            params, state = self.step(inp, state, seed)
            return t + 1, self.head.point(params), state, out.write(t, params)

        out = tf.TensorArray(tf.float32, size=steps)
        _, _, state, out = tf.while_loop(lambda t, *_: t < steps, body, (0, xs[0][:, :self.dim], state, out),
                                         maximum_iterations=steps)
        return tf.transpose(out.stack(), [1, 0, 2]), state


class LSTMNet(Net):
    def __init__(self, model):
        super().__init__(model)
        self.cells = [(l.cell.kernel, l.cell.recurrent_kernel, l.cell.bias)
                      for l in model.layers if isinstance(l, keras.layers.LSTM)]
        self.units = self.cells[0][1].shape[0]
        self.state_size = 2 * self.units * len(self.cells)

    def _unpack(self, state):
        return tf.split(state, 2 * len(self.cells), axis=-1)

    def step(self, x, state, dropout_seed=None):
        """One time step `[B, D]` -> head params `[B, P]`; state packed as [h1, c1, h2, c2, ...]."""
        hc = self._unpack(state)
        new, frames = [], x
        for i, (kernel, recurrent, bias) in enumerate(self.cells):
            z = tf.matmul(x, kernel) + tf.matmul(hc[2 * i], recurrent) + bias
            x, c = _gates(z, hc[2 * i + 1])
            new += [x, c]
            x = self.drop(x, i, dropout_seed)
        return self.predict(x, frames), tf.concat(new, -1)

    def window(self, x, state, dropout_seed=None):
        """Teacher-forced `[B, T, D]` -> params `[B, T, P]` and the state after the last step.

        Dropout (training only) acts on each layer's outputs outside the hand-written backward pass,
        so autodiff carries the gradient through its mask."""
        hc = self._unpack(state)
        h = tf.transpose(x, [1, 0, 2])
        new = []
        for i, weights in enumerate(self.cells):
            h, h_last, c_last = lstm_sequence(h, hc[2 * i], hc[2 * i + 1], *map(tf.convert_to_tensor, weights))
            new += [h_last, c_last]
            h = self.drop(h, i, dropout_seed)
        return self.predict(tf.transpose(h, [1, 0, 2]), x), tf.concat(new, -1)


class FNNNet(Net):
    """The baseline's 'state' is the previous normalised frame (zero = the mean pose)."""

    def __init__(self, model):
        super().__init__(model)
        self.hidden = model.get_layer("hidden")
        self.state_size = self.dim

    def step(self, x, state, dropout_seed=None):
        return self.head(self.hidden(tf.concat([state, x], -1))), x

    def window(self, x, state, dropout_seed=None):
        prev = tf.concat([state[:, None], x[:, :-1]], 1)
        return self.head(self.hidden(tf.concat([prev, x], -1))), x[:, -1]


def _gates(z, c):
    i, f, g, o = tf.split(z, 4, axis=-1)  # Keras's gate order
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c), c


@tf.custom_gradient
def lstm_sequence(x, h0, c0, kernel, recurrent, bias):
    """One LSTM layer over a time-major sequence `[T, B, Din]` -> (h `[T, B, U]`, h_T, c_T).

    Same math as keras.layers.LSTM. The backward pass is written out: the loop carries only
    dh/dc and stores dz per step; the weight gradients are then single large matmuls.
    """
    steps = tf.shape(x)[0]
    zx = tf.einsum("tbd,dk->tbk", x, kernel) + bias

    def body(t, h, c, hs, cs, gs):
        z = zx[t] + tf.matmul(h, recurrent)
        i, f, g, o = tf.split(z, 4, axis=-1)
        i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
        c = f * c + i * g
        h = o * tf.tanh(c)
        return t + 1, h, c, hs.write(t, h), cs.write(t, c), gs.write(t, tf.concat([i, f, g, o], -1))

    arrays = [tf.TensorArray(tf.float32, size=steps) for _ in range(3)]
    _, h_last, c_last, hs, cs, gs = tf.while_loop(
        lambda t, *_: t < steps, body, (0, h0, c0, *arrays), maximum_iterations=_static_len(x))
    hs, cs, gs = hs.stack(), cs.stack(), gs.stack()

    def grad(dhs, dh_last, dc_last):
        h_prev = tf.concat([h0[None], hs[:-1]], 0)
        c_prev = tf.concat([c0[None], cs[:-1]], 0)

        def back(s, dh, dc, dzs):
            t = steps - 1 - s
            i, f, g, o = tf.split(gs[t], 4, axis=-1)
            dh = dh + dhs[t]
            tanh_c = tf.tanh(cs[t])
            dc = dc + dh * o * (1 - tanh_c * tanh_c)
            dz = tf.concat([dc * g * i * (1 - i), dc * c_prev[t] * f * (1 - f),
                            dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], -1)
            return s + 1, tf.matmul(dz, recurrent, transpose_b=True), dc * f, dzs.write(t, dz)

        _, dh0, dc0, dzs = tf.while_loop(
            lambda s, *_: s < steps, back,
            (0, tf.zeros_like(h0) + dh_last, tf.zeros_like(c0) + dc_last, tf.TensorArray(tf.float32, size=steps)),
            maximum_iterations=_static_len(x))
        dz = dzs.stack()
        flat = tf.reshape(dz, [-1, dz.shape[-1]])
        d_kernel = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), flat, transpose_a=True)
        d_recurrent = tf.matmul(tf.reshape(h_prev, [-1, h_prev.shape[-1]]), flat, transpose_a=True)
        dx = tf.einsum("tbk,dk->tbd", dz, kernel)
        return dx, dh0, dc0, d_kernel, d_recurrent, tf.reduce_sum(flat, 0)

    return (hs, h_last, c_last), grad


def _static_len(x):
    return x.shape[0]  # None for a dynamic length: XLA needs it static, plain TF does not
