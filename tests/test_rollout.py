"""The exported sequence model (`rollout`): its signatures against the stateful Keras model, loaded without
tf_dance, their refusals, the client's streaming, and the sampling controls baked into an export."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_dance import cli, rollout, savedmodels, sequence_model, stage

from conftest import small_sequence_model as _model

DIM = 5


def _keras_point(model, params):
    net = sequence_model.make_net(model)
    return net.denormalize(net.head.point(tf.constant(params)).numpy())


def _keras_rollout(model, seed_frames, num_frames):
    """The reference: the stateful Keras model (or the FNN on frame pairs) fed its own output step by step."""
    seed_frames = np.asarray(seed_frames, np.float32)
    if any(isinstance(layer, keras.layers.LSTM) for layer in model.layers):
        single = sequence_model.stateful_copy(model, len(seed_frames))
        sequence_model.reset_states(single)
        frame = _keras_point(model, single(seed_frames).numpy()[:, -1])
        frames = [frame]
        for _ in range(num_frames - 1):
            frame = _keras_point(model, single(frame[:, None]).numpy()[:, -1])
            frames.append(frame)
    else:
        prev, frame = seed_frames[:, -2], seed_frames[:, -1]
        frames = []
        for _ in range(num_frames):
            prev, frame = frame, _keras_point(model, model(np.stack([prev, frame], 1)).numpy())
            frames.append(frame)
    return np.stack(frames, 1)


_LOAD_WITHOUT_TF_DANCE = r"""
import json, sys
import numpy as np, tensorflow as tf
args = json.loads(sys.argv[1])
out = {}
for name, path in args["models"].items():
    loaded = tf.saved_model.load(path)
    seed = np.load(args["seed"])
    temperature = 0.0 if "mdn" in name else 1.0  # MSE ignores the temperature
    frames = loaded.signatures["rollout"](seed=tf.constant(seed), num_frames=tf.constant(args["n"]),
                                          temperature=tf.constant(temperature), noise=tf.constant(0.0),
                                          random_seed=tf.constant(3))["frames"].numpy()
    state = loaded.signatures["initial_state"](batch_size=tf.constant(len(seed)))["state"]
    for t in range(seed.shape[1]):
        result = loaded.signatures["serving_default"](frame=tf.constant(seed[:, t]), state=state)
        state = result["state"]
    steps = [result["next_frame"].numpy()]
    for _ in range(args["n"] - 1):
        result = loaded.signatures["serving_default"](frame=result["next_frame"], state=state)
        state = result["state"]
        steps.append(result["next_frame"].numpy())
    out[name + "_rollout"], out[name + "_steps"] = frames, np.stack(steps, 1)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:  # TF1-style, as saved_model_cli / TF Serving
        signature = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path).signature_def["rollout"]
        feed = dict(seed=seed, num_frames=np.int32(args["n"]), temperature=np.float32(temperature),
                    noise=np.float32(0), random_seed=np.int32(3))
        out[name + "_tf1"] = sess.run(signature.outputs["frames"].name,
                                      {signature.inputs[k].name: v for k, v in feed.items()})
assert not any(m.startswith("tf_dance") for m in sys.modules)
np.savez(args["out"], **out)
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Three small untrained models exported as SavedModels: {name: (keras model, version dir)}."""
    root = str(tmp_path_factory.mktemp("saved_models"))
    models = {"lstm_mse": _model("lstm", "mse"), "lstm_mdn": _model("lstm", "mdn", num_layers=1, seed=1),
              "fnn_mse": _model("fnn", "mse", seed=2)}
    return {name: (m, rollout.export(m, root, f"dance_{name}")) for name, m in models.items()}


def test_signatures_agree_with_the_stateful_keras_model_loaded_without_tf_dance_tf2_and_tf1(exported, tmp_path):
    seed = np.random.default_rng(5).normal(size=(2, 4, DIM)).astype(np.float32)
    np.save(tmp_path / "seed.npy", seed)
    n = 40  # more than one compiled block (rollout.CHUNK)
    args = {"models": {name: path for name, (_, path) in exported.items()}, "seed": str(tmp_path / "seed.npy"),
            "n": n, "out": str(tmp_path / "out.npz")}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_TF_DANCE, json.dumps(args)], cwd=tmp_path,
                            env=dict(env, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(tmp_path / "out.npz")
    for name, (model, _) in exported.items():
        expected = _keras_rollout(model, seed, n)
        assert expected.shape == (2, n, DIM) and np.std(expected[:, -10:]) > 1e-3
        np.testing.assert_allclose(served[name + "_rollout"], expected, rtol=1e-5, atol=2e-4, err_msg=name)
        np.testing.assert_allclose(served[name + "_steps"], expected, rtol=1e-5, atol=2e-4, err_msg=name)
        np.testing.assert_allclose(served[name + "_tf1"], expected, rtol=1e-5, atol=2e-4, err_msg=name)


def _op_types(concrete_function):
    graph = concrete_function.graph.as_graph_def()
    types = {node.op for node in graph.node}
    for function in graph.library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_rollout_sampling_is_seeded_and_stateless(exported):
    _, path = exported["lstm_mdn"]
    seed = np.random.default_rng(6).normal(size=(3, DIM)).astype(np.float32)
    sample = lambda s: savedmodels.rollout(path, seed, 40, temperature=1.0, noise=0.3, random_seed=s)  # noqa: E731
    first, other, again = sample(7), sample(8), sample(7)
    np.testing.assert_array_equal(first, again)  # another request in between changed nothing
    assert not np.allclose(first, other)
    assert not np.allclose(first, savedmodels.rollout(path, seed, 40, temperature=0.0, noise=0.0))

    types = _op_types(savedmodels.load(path).signatures["rollout"])
    assert any(t.startswith("StatelessRandom") for t in types)
    stateful = {"RandomStandardNormal", "RandomUniform", "RandomUniformInt", "TruncatedNormal", "Multinomial",
                "RandomGamma", "RandomPoisson", "RandomPoissonV2", "RandomShuffle", "StatefulStandardNormalV2",
                "StatefulUniform", "StatefulUniformFullInt", "StatefulUniformInt", "RngSkip", "RngReadAndSkip"}
    assert not types & stateful


def test_rollout_rejects_bad_arguments(exported):
    _, path = exported["lstm_mse"]
    good = np.zeros((3, DIM), np.float32)
    for bad in [dict(seed_frames=np.zeros((3, DIM + 1))), dict(seed_frames=np.full((3, DIM), np.nan)),
                dict(seed_frames=np.zeros((0, DIM))), dict(num_frames=0), dict(temperature=-1.0),
                dict(noise=float("inf")), dict(random_seed=2**40)]:
        with pytest.raises(cli.UserError):
            savedmodels.rollout(path, **{"seed_frames": good, "num_frames": 5, **bad})


_GOOD = dict(seed=np.zeros((1, 3, DIM)), num_frames=5, temperature=1.0, noise=0.0, random_seed=0, start=1)


_REFUSED = [  # (signature, inputs changed from good ones, what the refusal says)
    ("rollout", dict(num_frames=2**31 - 1), "at most 1048576 frames"),
    ("rollout", dict(num_frames=10**8), "at most 1048576 frames"),
    ("rollout", dict(seed=np.zeros((2, 3, DIM)), num_frames=2**19 + 1), "at most 1048576 frames"),
    ("rollout", dict(num_frames=0), "num_frames must be >= 1"),
    ("rollout", dict(noise=np.inf), "noise must be a finite number"),
    ("rollout", dict(noise=np.nan), "noise must be a finite number"),
    ("rollout", dict(temperature=np.inf), "temperature must be a finite number"),
    ("rollout", dict(temperature=-1.0), "temperature must be a finite number"),
    ("rollout", dict(seed=np.zeros((1, 0, DIM))), "seed must hold at least one frame"),
    ("rollout", dict(seed=np.zeros((3, DIM))), f"seed must have shape [batch, frames, {DIM}]"),
    ("rollout", dict(seed=np.zeros((1, 3, DIM + 1))), f"seed must have shape [batch, frames, {DIM}]"),
    ("rollout", dict(seed=np.full((1, 3, DIM), np.nan)), "seed must hold only finite values"),
    ("prime", dict(temperature=np.inf), "temperature must be a finite number"),
    ("prime", dict(seed=np.zeros((1, 2, 3, DIM))), f"seed must have shape [batch, frames, {DIM}]"),
    ("prime", dict(seed=np.zeros((1, 2, 1, DIM))), f"seed [1,2,1,{DIM}] is not compatible with expected shape"),
    ("rollout", dict(seed=np.zeros((0, 3, DIM + 1))), f"seed [0,3,{DIM + 1}] is not compatible with expected shape"),
    ("continue_rollout", dict(noise=np.inf), "noise must be a finite number"),
    ("continue_rollout", dict(temperature=np.nan), "temperature must be a finite number"),
    ("continue_rollout", dict(state="nan"), "state must hold only finite values"),
    ("continue_rollout", dict(state="wide"), "state must have shape [batch, "),
    ("continue_rollout", dict(num_frames=2**31 - 32), "at most 1048576 frames"),
    ("continue_rollout", dict(num_frames=33), "multiple of 32"),
    ("continue_rollout", dict(start=2**31 - 10, num_frames=32), "start + num_frames must be below 2**31"),
    ("serving_default", dict(frame=np.zeros((1, DIM))), "frame and state must hold the same batch"),
    ("serving_default", dict(frame=np.full((2, DIM), np.inf)), "frame must hold only finite values"),
    ("serving_default", dict(state="nan"), "state must hold only finite values"),
    ("serving_default", dict(state="wide"), "state must have shape [batch, "),
    ("initial_state", dict(batch_size=2**31 - 1), "batch_size must be in 0..65536"),
]


def test_served_signatures_refuse_what_they_cannot_serve_in_words(exported):
    """Plain TensorFlow, as a client or `saved_model_cli run` calls them: each bad input is refused by a
    check naming it, before any work (a rollout of 2**31 - 1 frames used to return 33, noise=inf NaN frames,
    a NaN state NaN frames, a frame batch of 1 with a state batch of 2 was served)."""
    _, path = exported["lstm_mdn"]
    assert json.load(open(os.path.join(path, savedmodels.METADATA)))["max_frames"] == rollout.MAX_FRAMES == 2**20
    loaded = tf.saved_model.load(path)
    primed = loaded.signatures["prime"](seed=tf.constant(_GOOD["seed"], tf.float32), temperature=tf.constant(1.0),
                                        random_seed=tf.constant(0))["state"].numpy()
    step_state = loaded.signatures["initial_state"](batch_size=tf.constant(2))["state"].numpy()
    states = {"continue_rollout": primed, "serving_default": step_state}
    inputs = {"rollout": ["seed", "num_frames", "temperature", "noise", "random_seed"],
              "prime": ["seed", "temperature", "random_seed"],
              "continue_rollout": ["state", "start", "num_frames", "temperature", "noise", "random_seed"],
              "serving_default": ["frame", "state"], "initial_state": ["batch_size"]}
    for name, change, message in _REFUSED:
        state = states.get(name)
        given = {**_GOOD, "num_frames": 32 if name == "continue_rollout" else 5, "state": state,
                 "frame": np.zeros((2, DIM)), "batch_size": 2, **change}
        if isinstance(given["state"], str):
            given["state"] = (np.full_like(state, np.nan) if given["state"] == "nan"
                              else np.zeros((len(state), state.shape[1] + 1)))
        signature = loaded.signatures[name]
        specs = signature.structured_input_signature[1]
        feed = {k: tf.constant(given[k], specs[k].dtype) for k in inputs[name]}
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
            signature(**feed)


def test_client_streams_past_the_per_call_bound_and_quotes_refusals(exported, monkeypatch):
    """`savedmodels` rolls a dance longer than the export's `max_frames` out in pieces (the same frames), and
    an input the graph refuses is one `cli.UserError` quoting the check."""
    _, path = exported["lstm_mdn"]
    seed = np.random.default_rng(4).normal(size=(2, 3, DIM)).astype(np.float32)
    whole = savedmodels.rollout(path, seed, 100, temperature=1.0, noise=0.2, random_seed=5)
    model = savedmodels.load_sequence_model(path)
    monkeypatch.setattr(model, "max_frames", 64)
    np.testing.assert_allclose(model.rollout(seed, 100, 1.0, 0.2, 5), whole, rtol=1e-5, atol=1e-5)
    with pytest.raises(cli.UserError, match=r"refused the rollout call: assertion failed: \[temperature must be"):
        model.rollout(seed, 5, temperature=1e4)
    with pytest.raises(cli.UserError, match=r"refused the step call: assertion failed: \[frame and state must"):
        model.step(np.zeros((1, DIM)), model.initial_state(2))


# ---- sampling controls baked into an export (rollout.SAMPLING)


def test_zero_width_samples_the_chosen_components_mean():
    """width 0 on a dimension: that dimension is the drawn component's mean, whatever the noise key;
    the other dimensions are still sampled, and the component is still drawn at the temperature."""
    head = _model("lstm", "mdn").get_layer("head")
    params = tf.constant(np.random.default_rng(3).normal(size=(64, head.units)).astype(np.float32))
    _, mu, _ = head.split(params)
    width = tf.constant([1.0] * (DIM - 2) + [0.0, 0.0])
    draws = [head.sample(params, 1.0, tf.constant([s, 0], tf.int64), width).numpy() for s in range(4)]
    for x in draws:
        k = np.argmin(np.abs(mu.numpy()[:, :, -2:] - x[:, None, -2:]).sum(-1), 1)
        np.testing.assert_allclose(x[:, -2:], mu.numpy()[np.arange(64), k, -2:], atol=1e-6)
        assert np.abs(x[:, :-2] - mu.numpy()[np.arange(64), k, :-2]).mean() > 0.1  # pose dims keep their spread
    chosen = [np.argmin(np.abs(mu.numpy()[:, :, -2:] - x[:, None, -2:]).sum(-1), 1) for x in draws]
    assert len({tuple(c) for c in chosen}) > 1  # the component choice stays random


def _served_rollout(model, seed, frames, noise, random_seed, **sampling):
    """One rollout at temperature 1 from the in-process serving module with these sampling controls."""
    module = rollout.ServingModule(model, sampling=sampling)
    return module.rollout(tf.constant(seed), tf.constant(frames), tf.constant(1.0), tf.constant(noise),
                          tf.constant(random_seed))["frames"].numpy()[0]


def test_box_controls_round_trip_and_stop_the_box_jitter(tmp_path):
    """A stage box sampled with box_width 0 moves only when the component or the state does, and the
    smoothing makes it glide: far less frame-to-frame box motion than plain sampling, while the pose
    dims keep theirs. The controls are recorded in tf_dance.json and a reloaded export reproduces
    the in-process module."""
    model = _model("lstm", "mdn", batch=1, num_layers=1, seed=4)
    seed = np.random.default_rng(8).normal(size=(1, 6, DIM)).astype(np.float32)

    def roll(**sampling):
        return _served_rollout(model, seed, 300, noise=0.0, random_seed=2, **sampling)

    def box_step(x):
        return np.abs(np.diff(x[:, -3:], axis=0)).mean()

    plain, still = roll(), roll(box_dims=3, box_width=0.0, box_smoothing=0.8)
    assert box_step(still) < 0.25 * box_step(plain)
    assert np.abs(np.diff(still[:, :2], axis=0)).mean() > 0.5 * np.abs(np.diff(plain[:, :2], axis=0)).mean()
    recipe = dict(temperature=1.0, noise=0.0, width=1.0, smoothing=0.0, box_dims=3, box_width=0.0, box_smoothing=0.8,
                  coherence=0.0, beat_guidance=0.0, box_in_picture=False)
    path = rollout.export(model, str(tmp_path), "dance_lstm", recipe=recipe)
    with open(os.path.join(path, "tf_dance.json")) as f:
        assert json.load(f)["rollout"] == recipe
    loaded = savedmodels.load_sequence_model(path)
    assert loaded.controls == dict(width=1.0, smoothing=0.0, box_dims=3, box_width=0.0, box_smoothing=0.8,
                                   coherence=0.0, beat_guidance=0.0, box_in_picture=False)
    np.testing.assert_allclose(loaded.rollout(seed, 300, random_seed=2)[0], still, rtol=1e-5, atol=1e-5)
    streamed = np.concatenate(list(loaded.stream(seed, 300, random_seed=2, chunk=64)), 1)[0]
    np.testing.assert_array_equal(streamed, loaded.rollout(seed, 300, random_seed=2)[0])


def test_smoothing_filters_the_returned_frames_and_leaves_the_dance_alone(tmp_path):
    """Smoothing is a low-pass on what the rollout returns: the model is fed its raw samples, so the smoothed
    rollout is exactly the exponential average of the unsmoothed one (same seeds), from the seed's last frame;
    the streamed pieces (whose state then carries the returned frame too) join to the same frames."""
    model = _model("lstm", "mdn", batch=1, num_layers=1, seed=5)
    seed = np.random.default_rng(9).normal(size=(1, 6, DIM)).astype(np.float32)

    def roll(**sampling):
        return _served_rollout(model, seed, 100, noise=0.2, random_seed=4, **sampling)

    raw, smooth = roll(box_dims=2), roll(smoothing=0.5, box_dims=2, box_smoothing=0.8)
    factor = np.array([0.5] * (DIM - 2) + [0.8] * 2, np.float32)
    expected, previous = [], seed[0, -1]
    for x in raw:
        previous = x + factor * (previous - x)
        expected.append(previous)
    np.testing.assert_allclose(smooth, np.stack(expected), rtol=1e-4, atol=1e-4)
    assert np.abs(np.diff(smooth, axis=0)).mean() < 0.6 * np.abs(np.diff(raw, axis=0)).mean()
    path = rollout.export(model, str(tmp_path), "dance_lstm", recipe=dict(
        temperature=1.0, noise=0.2, smoothing=0.5, box_dims=2, box_smoothing=0.8))
    loaded = savedmodels.load_sequence_model(path)
    streamed = np.concatenate(list(loaded.stream(seed, 100, random_seed=4, chunk=32)), 1)[0]
    np.testing.assert_allclose(streamed, smooth, rtol=1e-5, atol=1e-5)


def test_given_normals_sample_the_mixture_like_drawn_ones():
    """The normals a coherent rollout passes in are turned into the same draws: components as often as
    softmax(logits / T) says, and the chosen Gaussian's spread."""
    head = sequence_model.MixtureHead(DIM, 3)
    logits = np.array([0.5, -0.3, 0.1], np.float32)
    mu = np.random.default_rng(5).normal(size=(3, DIM)).astype(np.float32) + 20 * np.arange(3)[:, None]
    log_sigma = np.log(np.random.default_rng(7).uniform(0.5, 2, (3, DIM))).astype(np.float32)
    params = tf.constant(np.repeat(np.concatenate([logits, mu.ravel(), log_sigma.ravel()])[None], 20000, 0), tf.float32)
    normal = tf.constant(np.random.default_rng(6).normal(size=(20000, head.noise_size)).astype(np.float32))
    x = head.sample(params, 0.7, tf.constant([0, 0], tf.int64), None, normal).numpy()
    k = np.argmin(np.abs(x[:, None, :] - mu[None]).sum(-1), 1)
    p = np.exp(logits / 0.7) / np.exp(logits / 0.7).sum()
    np.testing.assert_allclose(np.bincount(k, minlength=3) / len(k), p, atol=0.015)
    top = np.argmax(p)
    np.testing.assert_allclose(x[k == top].std(0), 0.7 * np.exp(log_sigma[top]), rtol=0.08)


def test_coherence_keeps_consecutive_samples_close_and_round_trips(tmp_path):
    """With coherence the sampling randomness is correlated from frame to frame: far less frame-to-frame
    motion than fresh sampling, while the frames still spread over as much of the space (unlike smoothing,
    which averages). Recorded in tf_dance.json; a reloaded export and its streamed pieces (whose state then
    carries the normals) reproduce the in-process module."""
    model = _model("lstm", "mdn", batch=1, num_layers=1, seed=6)
    seed = np.random.default_rng(10).normal(size=(1, 6, DIM)).astype(np.float32)

    def roll(**sampling):
        return _served_rollout(model, seed, 600, noise=0.0, random_seed=3, **sampling)

    def step(x):
        return np.abs(np.diff(x, axis=0)).mean()

    fresh, coherent, smoothed = roll(), roll(coherence=0.95), roll(smoothing=0.95)
    assert step(coherent) < 0.5 * step(fresh)
    assert coherent.std(0).mean() > 0.6 * fresh.std(0).mean() > smoothed.std(0).mean()
    path = rollout.export(model, str(tmp_path), "dance_lstm", recipe=dict(temperature=1.0, noise=0.0,
                                                                          coherence=0.95))
    with open(os.path.join(path, "tf_dance.json")) as f:
        assert json.load(f)["rollout"]["coherence"] == 0.95
    loaded = savedmodels.load_sequence_model(path)
    np.testing.assert_allclose(loaded.rollout(seed, 600, random_seed=3)[0], coherent, rtol=1e-5, atol=1e-5)
    streamed = np.concatenate(list(loaded.stream(seed, 600, random_seed=3, chunk=64)), 1)[0]
    np.testing.assert_array_equal(streamed, loaded.rollout(seed, 600, random_seed=3)[0])


def test_a_residual_box_is_fed_back_without_the_rollout_noise():
    """A model that predicts the box's change, here none (the head's box means are zero, so the box mean
    is the fed-back box), sampled with box_width 0: the box stays exactly where the seed left it whatever
    the rollout noise, which still reaches the pose."""
    model = sequence_model.build_model("lstm", DIM, np.zeros(DIM, np.float32), np.ones(DIM, np.float32), batch_size=1,
                                       units=8, num_layers=1, head="mdn", mixtures=3, box_residual=3, init="keras")
    head = model.get_layer("head")
    box_means = [3 + k * DIM + d for k in range(3) for d in range(DIM - 3, DIM)]  # [logits 3 | means 3 x DIM | ...]
    kernel, bias = head.get_weights()
    kernel[:, box_means], bias[box_means] = 0.0, 0.0
    head.set_weights([kernel, bias])
    seed = np.random.default_rng(8).normal(size=(1, 6, DIM)).astype(np.float32)
    quiet, noisy = (_served_rollout(model, seed, 100, noise=n, random_seed=2, box_dims=3, box_width=0.0)
                    for n in (0.0, 2.0))
    np.testing.assert_allclose(noisy[:, -3:], np.broadcast_to(seed[0, -1, -3:], (100, 3)), atol=1e-5)
    np.testing.assert_allclose(quiet[:, -3:], noisy[:, -3:], atol=1e-5)
    assert np.abs(noisy[:, :2] - quiet[:, :2]).mean() > 0.1


def _random_steps(stage, lean=0.0):
    """A residual-box model whose head ignores the LSTM: every component's steps have spread 0.05 on every dim,
    mean 0 but `lean` on the box's centre."""
    model = sequence_model.build_model("lstm", DIM, np.zeros(DIM, np.float32), np.ones(DIM, np.float32),
                                       batch_size=1, units=8, num_layers=1, head="mdn", mixtures=2,
                                       box_residual=3, box_stage=stage, init="keras", seed=3)
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    kernel[:] = 0.0
    bias[:] = 0.0
    bias[2 + 2 * DIM:] = np.log(0.05)
    bias[[2 + DIM - 3, 2 + 2 * DIM - 3]] = lean
    head.set_weights([kernel, bias])
    return model


def test_a_residual_box_walks_within_the_stage_the_model_carries(tmp_path):
    """A residual box whose head predicts random steps (here a wide spread and no mean step) walks without
    bound; with the data's stage carried by the model it is turned back at the stage's walls and still
    crosses it. With coherence, its steps are drawn fresh every frame (correlated steps add up to drifts)
    while the pose's normals stay correlated; the stage survives saving and loading."""
    stage = [[0.2, 0.4, 0.5], [0.8, 0.6, 0.7]]
    seed = np.full((1, 4, DIM), 0.5, np.float32)
    seed[..., -1] = 0.6
    free = _served_rollout(_random_steps(None), seed, 3000, noise=0.0, random_seed=1, box_dims=3)
    assert (free[:, -3] < 0.2).any() and (free[:, -3] > 0.8).any()
    path = tmp_path / "staged.keras"
    _random_steps(stage).save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("box_residual").stage == stage
    kept = _served_rollout(loaded, seed, 3000, noise=0.0, random_seed=1, box_dims=3, coherence=0.95)
    low, high = np.array(stage, np.float32)
    assert (kept[:, -3:] >= low - 1e-5).all() and (kept[:, -3:] <= high + 1e-5).all()
    for d in range(3):  # it crosses the stage: both outer fifths of every box dim are visited
        span = high[d] - low[d]
        assert (kept[:, -3 + d] < low[d] + span / 5).mean() > 0.02
        assert (kept[:, -3 + d] > high[d] - span / 5).mean() > 0.02
    steps = np.diff(kept, axis=0)
    def lag1(v):
        return np.corrcoef(v[:-1], v[1:])[0, 1]
    assert abs(lag1(steps[:, -3])) < 0.1  # fresh steps (a coherent walk's steps correlate at ~0.95)
    assert lag1(kept[:, 0]) > 0.5  # the pose's samples stay coherent


def test_a_residual_box_whose_steps_lean_one_way_still_crosses_the_stage(monkeypatch):
    """A trained model's box steps can lean one way by a few percent of their spread; reflected at the walls,
    such a walk spends its time against one wall (the footage-like dancer of one training: 40% of the time in
    the left tenth). The rollout takes the running mean of the proposed steps out, so it crosses the stage."""
    model = _random_steps([[0.2, 0.4, 0.5], [0.8, 0.6, 0.7]], lean=-0.01)  # a fifth of the steps' spread
    seed = np.full((1, 4, DIM), 0.5, np.float32)
    seed[..., -1] = 0.6

    def left_and_right_fifths():
        x = _served_rollout(model, seed, 16000, noise=0.0, random_seed=1, box_dims=3)[8000:, -3]
        return (x < 0.32).mean(), (x > 0.68).mean()

    left, right = left_and_right_fifths()
    assert left > 0.15 and right > 0.15
    module = rollout.ServingModule(model, sampling=dict(box_dims=3))  # the running mean rides in the state
    t, noise, random_seed = tf.constant(1.0), tf.constant(0.0), tf.constant(4)
    whole = module.rollout(tf.constant(seed), tf.constant(1 + 3 * 32), t, noise, random_seed)["frames"].numpy()
    primed = module.prime(tf.constant(seed), t, random_seed)
    pieces, state = [primed["frame"].numpy()[:, None]], primed["state"]
    for start in (1, 33, 65):
        out = module.continue_rollout(state, tf.constant(start), tf.constant(32), t, noise, random_seed)
        pieces.append(out["frames"].numpy())
        state = out["state"]
    np.testing.assert_allclose(np.concatenate(pieces, 1), whole, atol=1e-6)
    monkeypatch.setattr(rollout, "DRIFT_FRAMES", 0)
    left, right = left_and_right_fifths()
    assert left > 0.45 and right < 0.05


def test_box_in_picture_keeps_the_dancer_in_the_frame():
    """With box_in_picture the stage box's centre stays inside the frame and its height within the stage's limits
    (a box that would wander off is fed back as kept), while the pose dims are left as sampled."""
    model = _model("lstm", "mdn", batch=1, num_layers=1, seed=7)
    seed = np.random.default_rng(11).normal(size=(1, 6, DIM)).astype(np.float32)

    def roll(**sampling):
        return _served_rollout(model, seed, 400, noise=0.5, random_seed=5, box_dims=3, coherence=0.9, **sampling)

    free, kept = roll(), roll(box_in_picture=True)
    assert (free[:, -3:-1] < 0).any() and (free[:, -3:-1] > 1).any()
    assert kept[:, -3:-1].min() >= -1e-5 and kept[:, -3:-1].max() <= 1 + 1e-5
    assert stage.MIN_HEIGHT - 1e-5 <= kept[:, -1].min() and kept[:, -1].max() <= stage.MAX_HEIGHT + 1e-5
    assert np.abs(kept[:, :-3]).max() > 1.0


@pytest.mark.parametrize("sampling,message", [
    (dict(box_dims=DIM), "box_dims must be an integer in 0..4"),
    (dict(box_in_picture=1), "box_in_picture must be true or false"),
    (dict(box_in_picture=True, box_dims=2), "box_in_picture needs box_dims=3"),
    (dict(coherence=1.0), "coherence must be < 1"),
    (dict(box_dims=1.5), "box_dims must be an integer"),
    (dict(box_smoothing=1.0), "box_smoothing must be < 1"),
    (dict(width=float("nan")), "width must be a finite number >= 0"),
    (dict(box_width=-1.0), "box_width must be a finite number >= 0"),
    (dict(temperature=1.0), "unknown sampling control"),
])
def test_bad_sampling_controls_are_one_clear_error(sampling, message):
    with pytest.raises(cli.UserError, match=message):
        rollout.ServingModule(_model("lstm", "mdn", batch=1, num_layers=1), sampling=sampling)


def test_concurrent_rollouts_equal_sequential_ones(exported):
    from concurrent.futures import ThreadPoolExecutor
    _, path = exported["lstm_mdn"]
    seed = np.random.default_rng(9).normal(size=(3, DIM)).astype(np.float32)
    sample = lambda s: savedmodels.rollout(path, seed, 30, temperature=1.0, noise=0.3, random_seed=s)  # noqa: E731
    sequential = [sample(s) for s in range(8)]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(sample, range(8)))
    for a, b in zip(sequential, concurrent):
        np.testing.assert_array_equal(a, b)
