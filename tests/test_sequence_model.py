"""The sequence models against their Keras reference, and the paper's findings (their export: test_rollout.py)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_dance import perlin, savedmodels, sequence_model, sequence_training

from conftest import small_sequence_model as _model

DIM = 5


# ---- the fast functional view (Net) against the Keras model


@pytest.mark.parametrize("kind,head", [("lstm", "mse"), ("lstm", "mdn"), ("fnn", "mse")])
def test_net_matches_keras_forward_state_and_gradients(kind, head):
    model = _model(kind, head, batch=3)
    net = sequence_model.make_net(model)
    raw = np.random.default_rng(1).normal(size=(3, 14, DIM)).astype(np.float32)
    x = net.normalize(raw)

    if kind == "lstm":
        sequence_model.reset_states(model)
        expected = np.concatenate([model(raw[:, :7]).numpy(), model(raw[:, 7:]).numpy()], 1)  # state carries
    else:
        pairs = np.stack([np.concatenate([np.broadcast_to(net.mean, (3, 1, DIM)), raw[:, :-1]], 1), raw], 2)
        expected = model(pairs.reshape(-1, 2, DIM)).numpy().reshape(3, 14, -1)
    params, state = net.window(x[:, :7], net.zero_state(3))
    later, _ = net.window(x[:, 7:], state)
    np.testing.assert_allclose(np.concatenate([params, later], 1), expected, atol=1e-5)
    state, steps = net.zero_state(3), []
    for t in range(14):
        p, state = net.step(x[:, t], state)
        steps.append(p)
    np.testing.assert_allclose(np.stack(steps, 1), expected, atol=1e-5)

    target = tf.constant(np.random.default_rng(2).normal(size=expected.shape[:2] + (DIM,)), tf.float32)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:  # the hand-written LSTM backward pass against autodiff through Keras
        loss = net.head.loss(net.window(x[:, :7], net.zero_state(3))[0], target[:, :7])
    fast = tape.gradient(loss, variables)
    sequence_model.reset_states(model)
    with tf.GradientTape() as tape:
        reference = model(raw[:, :7]) if kind == "lstm" else model(pairs[:, :7].reshape(-1, 2, DIM))
        loss = net.head.loss(tf.reshape(reference, [3, 7, -1]), target[:, :7])
    for a, b in zip(fast, tape.gradient(loss, variables)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def test_box_residual_predicts_the_box_change_and_net_matches_keras(tmp_path):
    """With box_residual the head predicts the box's change: Net agrees with Keras and with the saved and
    reloaded model, and a head that predicts no change (all zero) gives every component the input frame's
    box as its box mean (the pose means stay the head's)."""
    rng = np.random.default_rng(3)
    mean, std = rng.normal(size=DIM).astype(np.float32), rng.uniform(0.5, 2, DIM).astype(np.float32)
    model = sequence_model.build_model("lstm", DIM, mean, std, batch_size=2, units=8, num_layers=1, head="mdn",
                                       mixtures=3, init="keras", box_residual=2)
    net = sequence_model.make_net(model)
    assert net.box_residual == 2
    raw = rng.normal(size=(2, 6, DIM)).astype(np.float32)
    x = net.normalize(raw)
    params, _ = net.window(x, net.zero_state(2))
    sequence_model.reset_states(model)
    np.testing.assert_allclose(params, model(raw).numpy(), atol=1e-5)
    model.save(tmp_path / "m.keras")
    reloaded = sequence_model.make_net(sequence_model.stateful_copy(keras.models.load_model(tmp_path / "m.keras"), 2))
    np.testing.assert_allclose(reloaded.window(x, net.zero_state(2))[0], params, atol=1e-6)

    head = model.get_layer("head")
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    _, mu, _ = net.head.split(net.window(x, net.zero_state(2))[0])
    np.testing.assert_allclose(mu[..., -2:], np.broadcast_to(x[:, :, None, -2:], (2, 6, 3, 2)), atol=1e-6)
    np.testing.assert_array_equal(mu[..., :-2], 0.0)
    with pytest.raises(ValueError, match="lstm model only"):
        sequence_model.build_model("fnn", DIM, mean, std, box_residual=2)


def test_a_residual_box_carries_its_stage_normalised_through_saving(tmp_path):
    """The data's stage (raw lows and highs of the box dims) is kept in the model's normalised space, where the
    rollout turns the box back; it survives saving, reloading and a stateful copy, and adds no weight."""
    rng = np.random.default_rng(4)
    mean, std = rng.normal(size=DIM).astype(np.float32), rng.uniform(0.5, 2, DIM).astype(np.float32)
    stage = [[0.1, 0.2], [0.9, 0.6]]
    kwargs = dict(batch_size=2, units=8, num_layers=1, head="mdn", mixtures=3, init="keras", box_residual=2)
    model = sequence_model.build_model("lstm", DIM, mean, std, box_stage=stage, **kwargs)
    net = sequence_model.make_net(model)
    for bound, raw in zip(net.box_stage, stage):
        np.testing.assert_allclose(net.denormalize(np.concatenate([np.zeros(DIM - 2), bound]))[-2:], raw, atol=1e-5)
    unstaged = sequence_model.build_model("lstm", DIM, mean, std, **kwargs)
    assert sequence_model.make_net(unstaged).box_stage is None
    assert len(model.weights) == len(unstaged.weights)
    model.save(tmp_path / "m.keras")
    reloaded = sequence_model.make_net(sequence_model.stateful_copy(keras.models.load_model(tmp_path / "m.keras"), 2))
    np.testing.assert_allclose(reloaded.box_stage, net.box_stage)


def test_auto_conditioning_feeds_back_the_models_own_prediction():
    model = _model("lstm", "mdn", batch=2)
    net = sequence_model.make_net(model)
    x = tf.constant(np.random.default_rng(3).normal(size=(2, 9, DIM)), tf.float32)
    params, state = net.conditioned_window(x, net.zero_state(2), ground_truth_steps=2, condition_steps=1)
    s, prev, expected = net.zero_state(2), None, []
    for t in range(9):
        p, s = net.step(x[:, t] if t % 3 < 2 else prev, s)
        prev = net.head.point(p)
        expected.append(p)
    np.testing.assert_allclose(params, tf.stack(expected, 1), atol=1e-5)
    np.testing.assert_allclose(state, s, atol=1e-5)
    teacher, _ = net.window(x, net.zero_state(2))
    assert not np.allclose(params[:, 2], teacher[:, 2], atol=1e-3)  # step 2 really saw another input


def test_input_noise_changes_the_training_inputs():
    losses = []
    for noise in (0.0, 0.0, 0.5):
        model = _model("lstm", batch=2)
        net = sequence_model.make_net(model)
        optimizer = keras.optimizers.Adam(1e-3)
        cfg = sequence_training.resolve_config(dict(input_noise=noise, jit_compile=False))
        step = sequence_training.make_train_step(net, optimizer, cfg)
        window = tf.constant(np.random.default_rng(4).normal(size=(2, 6, DIM)), tf.float32)
        losses.append(float(step(window, net.zero_state(2))[0]))
    assert losses[0] == losses[1] != losses[2]


def test_input_noise_leaves_a_residual_box_as_it_is():
    """A residual box is read without the training input noise: with a zero head (every mean 0 but the box's,
    which is the input box) the loss depends on the input box alone, and the noise leaves it unchanged."""
    rng = np.random.default_rng(4)
    window = tf.constant(rng.normal(size=(2, 6, DIM)), tf.float32)
    losses = []
    for noise in (0.0, 0.5):
        model = sequence_model.build_model("lstm", DIM, np.zeros(DIM, np.float32), np.ones(DIM, np.float32),
                                           batch_size=2, units=8, num_layers=1, head="mdn", mixtures=3,
                                           box_residual=2)
        head = model.get_layer("head")
        head.set_weights([np.zeros_like(w) for w in head.get_weights()])
        net = sequence_model.make_net(model)
        cfg = sequence_training.resolve_config(dict(input_noise=noise, jit_compile=False))
        step = sequence_training.make_train_step(net, keras.optimizers.Adam(1e-3), cfg)
        losses.append(float(step(window, net.zero_state(2))[0]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_char_rnn_batches_are_contiguous_streams_carried_across_batches():
    seq = np.arange(2 * 23, dtype=np.float32).reshape(23 * 2, 1)[:45]
    batches = sequence_training.char_rnn_batches(seq, batch_size=3, seq_length=4)
    assert batches.shape == (3, 3, 5, 1)  # streams of 15 frames -> (15 - 1) // 4 windows of 4 + 1
    np.testing.assert_array_equal(batches[0, 1, :, 0], [15, 16, 17, 18, 19])  # stream 1 starts at 15
    np.testing.assert_array_equal(batches[1, 1, :, 0], [19, 20, 21, 22, 23])  # next batch continues it


def test_learning_rate_decays_per_epoch_after_the_decay_start():
    schedule = sequence_training.EpochDecay(2e-3, steps_per_epoch=7, decay=0.97, after=10)
    rates = [float(schedule(e * 7 + 3)) for e in range(13)]
    np.testing.assert_allclose(rates[:10], 2e-3)
    np.testing.assert_allclose(rates[10:], 2e-3 * 0.97 ** np.arange(1, 4), rtol=1e-6)


def test_a_dimension_weighted_w_in_the_loss_counts_as_w_copies_of_it():
    """--box_loss_weight: a weight w on a dimension is that dimension seen w times (the mixture's
    responsibilities included), and all-ones weights are the unweighted loss."""
    rng = np.random.default_rng(3)
    k, target = 2, rng.normal(size=(4, 6, 3)).astype(np.float32)
    logits, mu = rng.normal(size=(4, 6, k)), rng.normal(size=(4, 6, k, 3))
    log_sigma = 0.3 * rng.normal(size=(4, 6, k, 3))
    repeat = [0, 1, 2, 2, 2]  # the last dimension three times

    def params(m, s):
        return tf.constant(np.concatenate([logits, m.reshape(4, 6, -1), s.reshape(4, 6, -1)], -1), tf.float32)

    weights = tf.constant([1.0, 1.0, 3.0])
    mdn, mdn5 = sequence_model.MixtureHead(3, k), sequence_model.MixtureHead(5, k)
    weighted = float(mdn.loss(params(mu, log_sigma), target, weights))
    copied = float(mdn5.loss(params(mu[..., repeat], log_sigma[..., repeat]), target[..., repeat]))
    np.testing.assert_allclose(weighted, copied, rtol=1e-5)
    assert abs(weighted - float(mdn.loss(params(mu, log_sigma), target))) > 1e-3
    np.testing.assert_allclose(float(mdn.loss(params(mu, log_sigma), target, tf.ones(3))),
                               float(mdn.loss(params(mu, log_sigma), target)), rtol=1e-6)
    point, guess = sequence_model.PointHead(3), tf.constant(mu[..., 0, :], tf.float32)
    np.testing.assert_allclose(float(point.loss(guess, target, weights)),
                               float(sequence_model.PointHead(5).loss(tf.gather(guess, repeat, axis=-1),
                                                                      target[..., repeat])), rtol=1e-5)


# ---- the paper's findings, small enough for CI


def _hold_and_jump(frames=2000, dim=8, poses=5, hold=8, seed=0):
    """A routine of `poses` random poses, each held `hold` frames, cycled, with a little jitter.

    From two frames the next one is ambiguous (is this hold ending?); only a model that counts
    frames, i.e. has memory, can know when to move on."""
    rng = np.random.default_rng(seed)
    routine = np.repeat(rng.normal(size=(poses, dim)), hold, 0)
    seq = np.tile(routine, (frames // len(routine) + 1, 1))[:frames]
    return (seq + 0.02 * rng.normal(size=seq.shape)).astype(np.float32)


def test_fnn_collapses_to_the_average_pose_while_the_lstm_keeps_dancing(tmp_path):
    """Section 5.2: rolled out from data frames, the FNN settles on one middle-of-the-road pose whatever
    it started from; an LSTM trained on the same data keeps dancing.

    Bound: the rollout's per-dimension std over frames 100-600 below 5% of the data's. The poses
    are ~1.4 data stds apart and the data's own jitter is 2% of its std, so a rollout under 5%
    never changes pose (it is frozen up to jitter-sized wobble); one that dances cycles through
    the poses with a std near the data's."""
    seq = _hold_and_jump()
    np.save(tmp_path / "routine.npy", seq)
    common = dict(batch_size=4, seq_length=25, train_frac=1.0, learning_rate=1e-2, jit_compile=False)
    ratios = {}
    for kind, settings in (("fnn", dict(epochs=15)), ("lstm", dict(units=32, num_layers=1, epochs=20))):
        result = sequence_training.train_and_evaluate(str(tmp_path / "routine.npy"), str(tmp_path / kind),
                                                      str(tmp_path / "saved"), model=kind, **common, **settings)
        generated = savedmodels.rollout(result["export_dir"], np.stack([seq[:20], seq[20:40]]), 600)  # two poses
        ratios[kind] = generated[0, 100:600].std(0) / seq.std(0)
        if kind == "fnn":
            ends = generated[:, -1]
    assert ratios["fnn"].max() < 0.05, ratios
    assert ratios["lstm"].mean() > 0.5 and ratios["lstm"].min() > 0.2, ratios
    # ... and the FNN's still pose is the average one: near the data mean, whatever pose it started from.
    spread = np.linalg.norm(seq - seq.mean(0), axis=1).mean()
    assert np.linalg.norm(ends - seq.mean(0), axis=1).max() < 0.5 * spread
    assert np.linalg.norm(ends[0] - ends[1]) < 0.05 * spread


def test_perlin_training_loss_falls_100_fold(tmp_path):
    """Section 5.3's sanity check on the 10-d Perlin set, CI-sized (the full-size run: BENCHMARKS.md)."""
    np.save(tmp_path / "perlin.npy", perlin.perlin_vectors(1200, seed=0, dim=10))
    result = sequence_training.train_and_evaluate(
        str(tmp_path / "perlin.npy"), str(tmp_path / "run"), str(tmp_path / "saved"), units=64, num_layers=2,
        batch_size=4, seq_length=25, epochs=40, learning_rate=1e-2, lr_decay=0.9, lr_decay_after=10)
    assert result["loss_drop"] >= 100, [h["train_loss"] for h in result["history"]]
    assert result["seconds_to_100x"] is not None
    assert result["val_loss"] < result["history"][0]["val_loss"]  # scored too (it generalises less well)


def test_auto_conditioning_mixture_head_and_noise_train_and_sample(tmp_path):
    """The anti-freeze options run end to end: acLSTM, the mixture head, input and rollout noise."""
    seq = perlin.perlin_vectors(600, seed=1, dim=6)
    np.save(tmp_path / "perlin.npy", seq)
    result = sequence_training.train_and_evaluate(
        str(tmp_path / "perlin.npy"), str(tmp_path / "run"), str(tmp_path / "saved"), units=16, num_layers=2,
        batch_size=4, seq_length=20, epochs=4, learning_rate=1e-2, head="mdn", mixtures=3, ground_truth_steps=3,
        condition_steps=2, input_noise=0.1)
    losses = [h["train_loss"] for h in result["history"]]
    assert losses[-1] < losses[0]
    info = json.load(open(os.path.join(result["export_dir"], savedmodels.METADATA)))
    assert info["head"] == "mdn" and info["config"]["condition_steps"] == 2
    generated = savedmodels.rollout(result["export_dir"], seq[:10], 50, temperature=0.5, noise=0.1, random_seed=1)
    assert generated.shape == (50, 6) and np.all(np.isfinite(generated))


def test_charrnn_init_uniform_0_08_and_forget_bias_1():
    from tf_dance import sequence_model
    mean, std = np.zeros(4, np.float32), np.ones(4, np.float32)
    model = sequence_model.build_model("lstm", 4, mean, std, batch_size=2, units=32, num_layers=2, init="charrnn")
    for i in range(2):
        kernel, recurrent, bias = model.get_layer(f"lstm_{i}").get_weights()
        for w in (kernel, recurrent):
            assert np.abs(w).max() <= 0.08 and np.abs(w).max() > 0.07 and w.std() == pytest.approx(
                0.08 / np.sqrt(3), rel=0.1)
        np.testing.assert_array_equal(bias[32:64], 1.0)  # Keras's gate order i, f, c, o
        assert np.abs(np.r_[bias[:32], bias[64:]]).max() <= 0.08 and np.r_[bias[:32], bias[64:]].std() > 0.03
    keras_init = sequence_model.build_model("lstm", 4, mean, std, batch_size=2, units=32, num_layers=1, init="keras")
    bias = keras_init.get_layer("lstm_0").get_weights()[2]
    np.testing.assert_array_equal(bias[32:64], 1.0)
    assert not np.r_[bias[:32], bias[64:]].any()
