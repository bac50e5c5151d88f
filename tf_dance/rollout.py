"""Exported sequence models: three SavedModel signatures and a Python `rollout` helper.

A version directory `saved_models/dance_lstm/<v>/` serves, with plain TensorFlow:

- `serving_default(frame [B, D], state [B, S]) -> {next_frame, state}`: one stateless step.
  The caller owns the state (LSTM: every layer's h and c packed as [h1, c1, h2, c2, ...];
  FNN: the previous normalised frame), so concurrent requests never share one.
  With the mixture head, `next_frame` is the temperature-0 prediction.
- `initial_state(batch_size int32) -> {state}`: the zero state.
- `rollout(seed [B, T, D], num_frames int32, temperature float32, noise float32,
  random_seed int32) -> {frames [B, num_frames, D]}`: primes on the seed frames, then feeds
  each generated frame back, the whole loop inside the graph. `temperature` scales the
  mixture head's sampling (no effect with MSE); `noise` is the std of Gaussian noise added to
  each fed-back frame, in units of each dimension's training std (the returned frames are
  clean). Randomness uses stateless ops keyed on (random_seed, frame index): a request is
  reproducible and shares no random state with any other.

Frames in and out are raw latents; the standardisation is inside the graph.
"""

import functools
import json
import os

import numpy as np
import tensorflow as tf

from tf_dance import cli
from tf_dance import sequence_model

METADATA = "tf_dance.json"
CHUNK = 32  # generated frames per compiled block: amortises the per-call cost, wastes < CHUNK steps


class ServingModule(tf.Module):
    """Pure-TF step/rollout functions over a trained model's variables."""

    def __init__(self, model, chunk=CHUNK):
        super().__init__()
        self.model = model
        # The underlying tf.Variables, tracked directly: without them TF1-style loaders
        # (`saved_model_cli run`, TF Serving) find no initialised variables to run with.
        self.tf_variables = [v.value for v in model.variables]
        self._net = sequence_model.make_net(model)
        self._chunk_len = chunk
        d, s = self._net.dim, self._net.state_size
        self.step = tf.function(self._step, input_signature=[
            tf.TensorSpec([None, d], tf.float32, name="frame"),
            tf.TensorSpec([None, s], tf.float32, name="state")])
        self.initial_state = tf.function(self._initial_state, input_signature=[
            tf.TensorSpec([], tf.int32, name="batch_size")])
        self.rollout = tf.function(self._rollout, input_signature=[
            tf.TensorSpec([None, None, d], tf.float32, name="seed"),
            tf.TensorSpec([], tf.int32, name="num_frames"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.float32, name="noise"),
            tf.TensorSpec([], tf.int32, name="random_seed")])
        self._generate = tf.function(self._generate_chunk, jit_compile=True)

    def signatures(self):
        return {"serving_default": self.step, "initial_state": self.initial_state, "rollout": self.rollout}

    def _step(self, frame, state):
        net = self._net
        params, state = net.step(net.normalize(frame), state)
        return {"next_frame": net.denormalize(net.head.point(params)), "state": state}

    def _initial_state(self, batch_size):
        tf.debugging.assert_non_negative(batch_size, "batch_size must be >= 0")
        return {"state": self._net.zero_state(batch_size)}

    def _rollout(self, seed, num_frames, temperature, noise, random_seed):
        net = self._net
        with tf.control_dependencies([
                tf.debugging.assert_positive(num_frames, "num_frames must be >= 1"),
                tf.debugging.assert_positive(tf.shape(seed)[1], "seed must hold at least one frame"),
                tf.debugging.assert_non_negative(temperature, "temperature must be >= 0"),
                tf.debugging.assert_non_negative(noise, "noise must be >= 0"),
                tf.debugging.assert_all_finite(seed, "seed frames must be finite")]):
            batch = tf.shape(seed)[0]
        params, state = net.window(net.normalize(seed), net.zero_state(batch))
        first = net.head.sample(params[:, -1], temperature, _seed(random_seed, 0, 0))
        x = first
        blocks = tf.maximum((num_frames - 1 + self._chunk_len - 1) // self._chunk_len, 1)
        out = tf.TensorArray(tf.float32, size=blocks, element_shape=[None, self._chunk_len, net.dim])
        for i in tf.range(blocks):
            x_next, state, frames = self._generate(x, state, i * self._chunk_len + 1, temperature, noise,
                                                   random_seed)
            out = out.write(i, frames)
            x = x_next
        later = tf.reshape(tf.transpose(out.stack(), [1, 0, 2, 3]), [batch, -1, net.dim])
        frames = tf.concat([first[:, None], later], 1)[:, :num_frames]
        return {"frames": net.denormalize(frames)}

    def _generate_chunk(self, x, state, start, temperature, noise, random_seed):
        """`CHUNK` closed-loop steps; frame n is fed back with noise seeded by (random_seed, n).

        A while loop rather than unrolled steps: XLA compiles it in a fraction of the time, and
        at batch 1 the step is bound by reading the weights, not by loop overhead."""
        net = self._net

        def body(t, x, state, frames):
            n = start + t
            fed = x + noise * tf.random.stateless_normal(tf.shape(x), _seed(random_seed, n - 1, 1))
            params, state = net.step(fed, state)
            x = net.head.sample(params, temperature, _seed(random_seed, n, 0))
            return t + 1, x, state, frames.write(t, x)

        frames = tf.TensorArray(tf.float32, size=self._chunk_len, element_shape=x.shape)
        _, x, state, frames = tf.while_loop(lambda t, *_: t < self._chunk_len, body, (0, x, state, frames),
                                            maximum_iterations=self._chunk_len)
        return x, state, tf.transpose(frames.stack(), [1, 0, 2])


def _seed(random_seed, frame, stream):
    return tf.stack([tf.cast(random_seed, tf.int64), 2 * tf.cast(frame, tf.int64) + stream])


def export(model, export_dir, name, metadata=None):
    """Writes `export_dir/name/<next version>/` atomically; returns that directory."""
    module = ServingModule(model)
    net = module._net
    info = {"model": "lstm" if isinstance(net, sequence_model.LSTMNet) else "fnn",
            "head": "mdn" if isinstance(net.head, sequence_model.MixtureHead) else "mse",
            "dim": net.dim, "state_size": net.state_size, **(metadata or {})}

    def write(tmp):
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        with open(os.path.join(tmp, METADATA), "w") as f:
            json.dump(info, f, indent=2)

    return cli.export_version(export_dir, name, write)


@functools.lru_cache(maxsize=4)
def _load(version_dir):
    return tf.saved_model.load(version_dir)


def load(model_dir):
    """The SavedModel at `model_dir` (a version, or a root whose latest version is used)."""
    return _load(os.path.abspath(cli.resolve_model_dir(model_dir, "sequence model")))


def rollout(model_dir, seed_frames, num_frames, temperature=1.0, noise=0.0, random_seed=0):
    """Generates `num_frames` latents after priming on `seed_frames` (`[T, D]` or `[B, T, D]`).

    Returns `[num_frames, D]` (or `[B, num_frames, D]`) float32. Bad arguments raise `cli.UserError`.
    """
    loaded = load(model_dir)
    fn = loaded.signatures["rollout"]
    dim = fn.structured_input_signature[1]["seed"].shape[-1]
    seed = np.asarray(seed_frames, dtype=np.float32)
    single = seed.ndim == 2
    if single:
        seed = seed[None]
    if seed.ndim != 3 or seed.shape[1] == 0 or seed.shape[0] == 0:
        raise cli.UserError(f"seed frames must be [T, D] or [B, T, D] with T >= 1, got shape {np.shape(seed_frames)}")
    if seed.shape[-1] != dim:
        raise cli.UserError(f"seed frames are {seed.shape[-1]}-d but the model at {model_dir} takes {dim}-d latents")
    if not np.all(np.isfinite(seed)):
        raise cli.UserError("seed frames contain NaN or inf")
    if int(num_frames) != num_frames or num_frames < 1 or num_frames >= 2**31:
        raise cli.UserError(f"num_frames must be a positive integer, got {num_frames}")
    if not (np.isfinite(temperature) and temperature >= 0):
        raise cli.UserError(f"temperature must be >= 0, got {temperature}")
    if not (np.isfinite(noise) and noise >= 0):
        raise cli.UserError(f"noise must be >= 0, got {noise}")
    if int(random_seed) != random_seed or not -2**31 <= random_seed < 2**31:
        raise cli.UserError(f"random_seed must be a 32-bit integer, got {random_seed}")
    frames = fn(seed=tf.constant(seed), num_frames=tf.constant(int(num_frames), tf.int32),
                temperature=tf.constant(temperature, tf.float32), noise=tf.constant(noise, tf.float32),
                random_seed=tf.constant(int(random_seed), tf.int32))["frames"].numpy()
    return frames[0] if single else frames
