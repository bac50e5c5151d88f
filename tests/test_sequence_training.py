"""LSTM training on several clips (no window or carried state crosses a cut, validation inside clips),
best-epoch export, early stopping, dropout and extra training latents."""

import json
import os
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_dance import cli, data, perlin, savedmodels, sequence_model, sequence_training

from conftest import ROOT

TINY = dict(model="lstm", units=8, num_layers=1, batch_size=4, seq_length=10, learning_rate=1e-2,
            jit_compile=False, train_frac=0.9)


def _clip(frames, level, seed, dim=3):
    """A clip around `level` in every dimension: which clip a frame came from is visible in any value."""
    return (level + 0.3 * np.random.default_rng(seed).standard_normal((frames, dim))).astype(np.float32)


def _two_clips():
    latents = np.concatenate([_clip(300, 5.0, 0), _clip(200, -5.0, 1)])
    return latents, np.repeat(np.int32([0, 1]), [300, 200])


def _label(raw):
    return np.digitize(raw[..., 0], [0.0, 12.0])  # -5 -> 0, +5 -> 1, +20 -> 2


def test_split_validates_the_tail_of_each_clip_and_windows_never_span_a_cut():
    latents, clips = _two_clips()
    cfg = sequence_training.resolve_config(dict(TINY, batch_size=3))
    train, train_clips, val = sequence_training.split(latents, cfg, clips)
    np.testing.assert_array_equal(train, np.concatenate([latents[:270], latents[300:480]]))
    np.testing.assert_array_equal(train_clips, np.repeat([0, 1], [270, 180]))
    assert len(val) == 2
    for (context, stretch), start, cut, end in zip(val, (0, 300), (270, 480), (300, 500)):
        np.testing.assert_array_equal(stretch, latents[cut:end])  # the clip's last 10%, whole
        np.testing.assert_array_equal(context, latents[cut - cfg["seq_length"]:cut])  # warm-up inside the clip
        assert len(set(_label(np.concatenate([context, stretch])))) == 1

    windows = sequence_training.char_rnn_batches(train, 3, 10, train_clips)
    starts, fresh = sequence_training.stream_layout(train_clips, 3, 10)
    assert windows.shape == (*starts.shape, 11, 3)
    labels = _label(windows)
    assert all(len(set(w)) == 1 for w in labels.reshape(-1, 11))  # no window holds frames of both clips
    assert set(labels[:, :, 0].ravel()) == {0, 1}
    # a stream that reaches the cut restarts on the next clip, marked fresh there (and only there)
    changed = labels[1:, :, 0] != labels[:-1, :, 0]
    np.testing.assert_array_equal(fresh[1:], changed)
    assert changed.any() and fresh[0].all()
    for b, s in zip(*np.nonzero(~fresh)):  # elsewhere windows continue their stream (overlap by one frame)
        if b:
            np.testing.assert_array_equal(windows[b, s, 0], windows[b - 1, s, -1])


def test_one_clip_layout_is_char_rnns():
    seq = np.arange(45, dtype=np.float32)[:, None]
    starts, fresh = sequence_training.stream_layout(np.zeros(45, np.int32), 3, 4)
    np.testing.assert_array_equal(starts, [[0, 15, 30], [4, 19, 34], [8, 23, 38]])
    assert fresh[0].all() and not fresh[1:].any()
    np.testing.assert_array_equal(sequence_training.char_rnn_batches(seq, 3, 4)[..., 0],
                                  seq[starts[..., None] + np.arange(5), 0])


@pytest.fixture
def recorded_steps(monkeypatch):
    """Every training step's (raw window, state in) of the runs in a test."""
    calls = []
    real = sequence_training.make_train_step

    def recording(net, optimizer, cfg, strategy=None):
        step = real(net, optimizer, cfg, strategy)

        def wrapped(window, state):
            calls.append((net.denormalize(np.asarray(window)), np.asarray(state)))
            return step(window, state)
        return wrapped

    monkeypatch.setattr(sequence_training, "make_train_step", recording)
    return calls


def test_training_resets_the_state_at_every_cut_and_trains_on_extra_latents(tmp_path, recorded_steps):
    latents, clips = _two_clips()
    np.save(tmp_path / "z.npy", latents)
    np.save(tmp_path / "z_clips.npy", clips)  # as `encode` writes them
    np.save(tmp_path / "flipped.npy", _clip(150, 20.0, 2))
    result = sequence_training.train_and_evaluate(
        str(tmp_path / "z.npy"), str(tmp_path / "run"), str(tmp_path / "saved"),
        **dict(TINY, batch_size=3, epochs=1, extra_latents=[str(tmp_path / "flipped.npy")]))
    windows = np.stack([w for w, _ in recorded_steps])
    states = np.stack([s for _, s in recorded_steps])
    labels = _label(windows)
    assert set(labels.ravel()) == {0, 1, 2}  # both clips and the extra file are trained on
    assert all(len(set(w)) == 1 for w in labels.reshape(-1, windows.shape[2]))
    zero = np.all(states == 0, axis=-1)  # [batches, streams]
    assert zero[0].all()
    changed = labels[1:, :, 0] != labels[:-1, :, 0]
    np.testing.assert_array_equal(zero[1:], changed)  # reset exactly where a stream enters another clip
    assert changed.sum() >= 2
    info = json.load(open(os.path.join(result["export_dir"], savedmodels.METADATA)))
    extra = np.load(tmp_path / "flipped.npy")
    assert info["latents"]["extra_latents"] == [{"frames": 150, "crc32": zlib.crc32(extra.tobytes())}]
    assert "clips" in info["latents"]


def _overfitting_clips(dim=4):
    """Two clips, each smooth for 90% and noise in its last 10% (the validation stretch): the better the
    model learns the smooth part, the worse it does on validation, so validation loss turns up early."""
    rng = np.random.default_rng(0)
    parts = []
    for k in range(2):
        smooth = perlin.perlin_vectors(180, seed=k, dim=dim)
        parts += [smooth, rng.normal(smooth.mean(0), smooth.std(0), (20, dim)).astype(np.float32)]
    return np.concatenate(parts), np.repeat(np.int32([0, 1]), 200)


def _validation_loss(net, latents, clips, cfg):
    def fn(x, y, warm):
        return net.head.loss(net.window(x, net.zero_state(1))[0][:, warm - 1:], y[:, warm - 1:])

    _, _, val = sequence_training.split(latents, cfg, clips)
    parts = [(net.normalize(np.concatenate([c, v]))[None], len(c), len(v)) for c, v in val]
    return sequence_training.validation_loss(fn, parts)


def test_the_export_is_the_best_validation_epoch_and_patience_stops_early(tmp_path, capfd):
    latents, clips = _overfitting_clips()
    np.save(tmp_path / "z.npy", latents)
    settings = dict(TINY, batch_size=2, epochs=40, patience=3)
    result = sequence_training.train_and_evaluate(str(tmp_path / "z.npy"), str(tmp_path / "run"),
                                                  str(tmp_path / "saved"), clips=clips, **settings)
    val = [h["val_loss"] for h in result["history"]]
    best = int(np.argmin(val)) + 1
    assert result["best_epoch"] == best and result["best_val_loss"] == val[best - 1]
    assert result["stopped_early"] and result["trained_epochs"] == best + 3 == len(val) < 40
    assert min(val[best:]) > val[best - 1]
    out = capfd.readouterr().out
    assert f"Exporting epoch {best} of {best + 3}" in out and "Stopped early after epoch" in out

    info = json.load(open(os.path.join(result["export_dir"], savedmodels.METADATA)))
    assert (info["best_epoch"], info["best_val_loss"], info["trained_epochs"]) == (best, val[best - 1], best + 3)
    cfg = sequence_training.resolve_config(settings)
    exported = sequence_model.make_net(keras.models.load_model(tmp_path / "run" / "model.keras"))
    np.testing.assert_allclose(_validation_loss(exported, latents, clips, cfg), val[best - 1], rtol=1e-5)
    assert not np.isclose(val[-1], val[best - 1], rtol=1e-3)  # the last epoch's weights would not match

    # the SavedModel is the same model: one step from the same state agrees with the Keras file
    frame = latents[:2]
    loaded = savedmodels.load(result["export_dir"])
    state = loaded.signatures["initial_state"](batch_size=tf.constant(2))["state"]
    served = loaded.signatures["serving_default"](frame=tf.constant(frame), state=state)["next_frame"].numpy()
    params, _ = exported.step(exported.normalize(frame), exported.zero_state(2))
    np.testing.assert_allclose(served, exported.denormalize(exported.head.point(params).numpy()), atol=1e-5)


def _model(dropout, batch=3):
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=5).astype(np.float32), rng.uniform(0.5, 2, 5).astype(np.float32)
    keras.utils.set_random_seed(0)
    return sequence_model.build_model("lstm", 5, mean, std, batch_size=batch, units=8, num_layers=2,
                                      init="keras", seed=0, dropout=dropout)


def test_dropout_is_training_only_and_its_gradient_matches_autodiff_through_keras():
    model = _model(0.4)
    net = sequence_model.make_net(model)
    assert net.dropout == 0.4
    raw = np.random.default_rng(1).normal(size=(3, 9, 5)).astype(np.float32)
    x = net.normalize(raw)
    sequence_model.reset_states(model)
    np.testing.assert_allclose(net.window(x, net.zero_state(3))[0], model(raw), atol=1e-5)  # inference: none
    seed = tf.constant([7, 3], tf.int64)
    dropped, _ = net.window(x, net.zero_state(3), seed)
    assert not np.allclose(dropped, model(raw), atol=1e-3)
    np.testing.assert_array_equal(dropped, net.window(x, net.zero_state(3), seed)[0])  # seeded: repeatable

    # Reference: Keras's own LSTM layers, autodiff, the same dropout masks on their outputs.
    target = tf.constant(np.random.default_rng(2).normal(size=(3, 9, 5)), tf.float32)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        loss = net.head.loss(net.window(x, net.zero_state(3), seed)[0], target)
    fast = tape.gradient(loss, variables)
    sequence_model.reset_states(model)
    lstms = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    with tf.GradientTape() as tape:
        h = tf.constant(x)
        for i, layer in enumerate(lstms):
            h = tf.transpose(net.drop(tf.transpose(layer(h), [1, 0, 2]), i, seed), [1, 0, 2])
        reference = net.head.loss(net.head(h), target)
    np.testing.assert_allclose(loss, reference, rtol=1e-5)
    for a, b in zip(fast, tape.gradient(reference, variables)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def test_dropout_off_is_the_model_and_training_step_without_it():
    plain, off = _model(0.0), _model(0.0)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in off.layers)
    assert [layer.name for layer in plain.layers] == [layer.name for layer in off.layers]
    net = sequence_model.make_net(off)
    window = tf.constant(np.random.default_rng(4).normal(size=(3, 8, 5)), tf.float32)
    np.testing.assert_array_equal(net.window(window, net.zero_state(3), tf.constant([1, 2], tf.int64))[0],
                                  net.window(window, net.zero_state(3))[0])
    # one compiled training step with dropout 0 is exactly a plain tape step
    optimizer = keras.optimizers.Adam(1e-2)
    step = sequence_training.make_train_step(net, optimizer, sequence_training.resolve_config(dict(jit_compile=False)))
    loss, _ = step(window, net.zero_state(3))
    reference = sequence_model.make_net(plain)
    with tf.GradientTape() as tape:
        expected = reference.head.loss(reference.window(window[:, :-1], reference.zero_state(3))[0], window[:, 1:])
    variables = plain.trainable_variables
    reference_optimizer = keras.optimizers.Adam(1e-2)
    reference_optimizer.build(variables)
    reference_optimizer.apply_gradients(zip(tape.gradient(expected, variables), variables))
    assert float(loss) == float(expected)
    for a, b in zip(off.trainable_variables, variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_dropout_trains_with_xla_and_changes_the_losses(tmp_path):
    np.save(tmp_path / "z.npy", perlin.perlin_vectors(300, seed=0, dim=4))
    losses = {}
    for dropout in (0.0, 0.5):
        result = sequence_training.train_and_evaluate(
            str(tmp_path / "z.npy"), str(tmp_path / f"run{dropout}"), str(tmp_path / "saved"),
            **dict(TINY, epochs=1, dropout=dropout, jit_compile=True))
        losses[dropout] = result["history"][0]["train_loss"]
        assert np.isfinite(result["val_loss"])
    assert losses[0.0] != losses[0.5]


@pytest.mark.parametrize("settings,message", [
    (dict(dropout=1.0), "dropout must be < 1"),
    (dict(patience=2, train_frac=1.0), "patience needs a validation part"),
    (dict(model="fnn", dropout=0.2), "dropout applies to the lstm model only"),
    (dict(extra_latents=["missing.npy"]), "missing.npy"),
    (dict(batch_size=8, seq_length=60), "too few"),
    (dict(batch_size=2, seq_length=200), "inside one clip"),
])
def test_bad_new_settings_raise_one_clear_error_and_write_nothing(tmp_path, settings, message):
    latents, clips = _two_clips()
    np.save(tmp_path / "z.npy", latents)
    np.save(tmp_path / "z_clips.npy", clips)
    with pytest.raises(cli.UserError, match=message):
        sequence_training.train_and_evaluate(str(tmp_path / "z.npy"), str(tmp_path / "run"), str(tmp_path / "saved"),
                                             **dict(TINY, **settings))
    assert not (tmp_path / "run").exists()


def test_clips_that_do_not_match_the_latents_are_refused(tmp_path):
    latents, clips = _two_clips()
    np.save(tmp_path / "z.npy", latents)
    np.save(tmp_path / "z_clips.npy", clips[:-1])
    with pytest.raises(cli.UserError, match="re-run encode"):
        data.load_latent_clips(str(tmp_path / "z.npy"), len(latents))
    np.testing.assert_array_equal(data.load_latent_clips(str(tmp_path / "none.npy"), 4), np.zeros(4))
    with pytest.raises(cli.UserError, match="go up by 1"):
        sequence_training.train_and_evaluate(str(tmp_path / "z.npy"), str(tmp_path / "run"), str(tmp_path / "saved"),
                                             clips=np.repeat([0, 2], 250), **TINY)


def test_cli_bad_new_flags_give_one_error_line(tmp_path, run_module, fails_cleanly):
    latents, _ = _two_clips()
    np.save(tmp_path / "z.npy", latents)
    common = [f"--latents={tmp_path}/z.npy", f"--workdir={tmp_path}/run", f"--export_dir={tmp_path}/saved",
              "--units=4", "--num_layers=1", "--batch_size=2", "--seq_length=5", "--jit_compile=false"]
    fails_cleanly(run_module("tf_dance.train_lstm", *common, "--dropout=1.5"), "--dropout")
    fails_cleanly(run_module("tf_dance.train_lstm", *common, f"--extra_latents={tmp_path}/nope.npy"), "nope.npy")
    assert sorted(os.listdir(tmp_path)) == ["z.npy"]


def test_the_export_records_the_autoencoder_training_and_normalization_it_learnt(tmp_path):
    """The latents' record (written by encode) goes into the export, so that generate/evaluate pick that
    training's encoder and decoder; extra latents of another training are refused before training."""
    latents, clips = _two_clips()
    z = str(tmp_path / "z.npy")
    np.save(z, latents)
    np.save(tmp_path / "z_clips.npy", clips)
    data.save_latent_source(z, latents, str(tmp_path / "models" / "encoder" / "1"), "first")
    extra = str(tmp_path / "extra.npy")
    np.save(extra, latents[:100])
    data.save_latent_source(extra, latents[:100], str(tmp_path / "models" / "encoder" / "2"), "second")
    with pytest.raises(cli.UserError, match="encoded by autoencoder training second.*belongs to training first"):
        sequence_training.train_and_evaluate(z, str(tmp_path / "run"), str(tmp_path / "saved"),
                                             **dict(TINY, epochs=1, extra_latents=[extra]))
    assert not (tmp_path / "run").exists()
    result = sequence_training.train_and_evaluate(z, str(tmp_path / "run"), str(tmp_path / "saved"),
                                                  **dict(TINY, epochs=1))
    info = savedmodels.record(result["export_dir"])
    assert info["autoencoder"] == {"training_id": "first", "encoder": str(tmp_path / "models" / "encoder" / "1")}
    assert savedmodels.learnt_from(info) == "first" and info["dim"] == 3
    net = sequence_model.make_net(keras.models.load_model(tmp_path / "run" / "model.keras"))
    np.testing.assert_allclose(info["normalization"]["mean"], np.asarray(net.mean).reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(info["normalization"]["std"], np.asarray(net.std).reshape(-1), rtol=1e-6)


def test_box_loss_weight_weights_the_box_dims_in_training_and_is_recorded(tmp_path):
    """The last --rollout_box_dims dimensions count --box_loss_weight times in the training and
    validation loss (1, or no box dims: the unweighted loss), and the export records the weight."""
    latents, clips = _two_clips()
    np.save(tmp_path / "z.npy", latents)
    np.save(tmp_path / "z_clips.npy", clips)
    cfg = sequence_training.resolve_config(dict(TINY, rollout_box_dims=1, box_loss_weight=8.0))
    np.testing.assert_array_equal(sequence_training.loss_weights(cfg, 3), [1, 1, 8])
    assert sequence_training.loss_weights(dict(cfg, box_loss_weight=1.0), 3) is None
    assert sequence_training.loss_weights(dict(cfg, rollout_box_dims=0), 3) is None
    results = {}
    for weight in (1.0, 8.0):
        results[weight] = sequence_training.train_and_evaluate(
            str(tmp_path / "z.npy"), str(tmp_path / f"run{weight}"), str(tmp_path / f"saved{weight}"),
            **dict(TINY, epochs=1, head="mdn", mixtures=2, rollout_box_dims=1, box_loss_weight=weight))
    assert results[1.0]["history"][0]["first_batch_loss"] != results[8.0]["history"][0]["first_batch_loss"]
    assert results[1.0]["val_loss"] != results[8.0]["val_loss"]
    assert savedmodels.record(results[8.0]["export_dir"])["config"]["box_loss_weight"] == 8.0
    claims = {w: json.load(open(tmp_path / f"run{w}" / "config.json"))["settings"] for w in (1.0, 8.0)}
    assert "box_loss_weight" not in claims[1.0] and claims[8.0]["box_loss_weight"] == 8.0  # older runs resume


def test_box_residual_is_recorded_and_needs_the_box_dims(tmp_path):
    latents, clips = _two_clips()
    np.save(tmp_path / "z.npy", latents)
    np.save(tmp_path / "z_clips.npy", clips)
    with pytest.raises(cli.UserError, match="--box_residual needs"):
        sequence_training.train_and_evaluate(str(tmp_path / "z.npy"), str(tmp_path / "bad"), str(tmp_path / "s"),
                                             **dict(TINY, epochs=1, box_residual=True))
    assert not (tmp_path / "bad").exists()
    result = sequence_training.train_and_evaluate(
        str(tmp_path / "z.npy"), str(tmp_path / "run"), str(tmp_path / "saved"),
        **dict(TINY, epochs=1, head="mdn", mixtures=2, rollout_box_dims=1, box_residual=True))
    assert savedmodels.record(result["export_dir"])["config"]["box_residual"] is True
    net = sequence_model.make_net(keras.models.load_model(tmp_path / "run" / "model.keras"))
    assert net.box_residual == 1
    train, _, _ = sequence_training.split(latents, sequence_training.resolve_config(TINY), clips)
    stage = np.percentile(train[:, -1:], [1, 99], axis=0)  # the training frames' stage, carried by the model
    np.testing.assert_allclose(net.box_stage, (stage - net.mean[-1:]) / net.std[-1:], rtol=1e-5)
    assert stage[0][0] < stage[1][0]


def test_charrnn_split_keeps_the_leading_95_percent_for_training():
    from tf_dance import sequence_training
    z = np.arange(1000, dtype=np.float32)[:, None]
    train, _, val = sequence_training.split(z, sequence_training.resolve_config({}))
    (context, stretch), = val
    assert len(train) == 950 and train[-1, 0] == 949 and stretch[0, 0] == 950 and len(stretch) == 50
    assert context[-1, 0] == 949


def test_paper_lstm_feeds_raw_latents():
    from tf_dance import sequence_training
    paper = sequence_training.resolve_config(sequence_training.flagfile_settings(f"{ROOT}/flags/paper_lstm.flags"))
    assert paper["normalize"] is False and sequence_training.resolve_config({})["normalize"] is True


def test_lstm_sizing_lowers_the_batch_until_an_epoch_makes_enough_updates(tmp_path):
    """Footage of a few thousand frames: the flagfile's 16 streams would leave a handful of updates per epoch."""
    flagfile = os.path.join(ROOT, "flags", "footage_lstm.flags")
    cfg = sequence_training.resolve_config(sequence_training.flagfile_settings(flagfile))
    frames = np.zeros((3000, 54, 96, 1), np.uint8)
    clips = np.repeat(np.int32([0, 1]), [2000, 1000])
    short = data.save_dataset(str(tmp_path / "short.npz"), frames, 24.0, clips=clips)
    train = int(2000 * cfg["train_frac"]) + int(1000 * cfg["train_frac"])
    flags, why = sequence_training.lstm_sizing(short, flagfile, 0)
    fitted = train // (cfg["seq_length"] * sequence_training.MIN_UPDATES_PER_EPOCH)
    assert 1 < fitted < cfg["batch_size"] and flags == [f"--batch_size={fitted}"]
    assert f"3000 frames in 2 clips, {train} for training" in why and f"(flagfile: {cfg['batch_size']})" in why
    long = data.save_dataset(str(tmp_path / "long.npz"), np.zeros((17000, 54, 96, 1), np.uint8), 24.0)
    assert sequence_training.lstm_sizing(long, flagfile, 0)[0] == [f"--batch_size={cfg['batch_size']}"]
    tiny = data.save_dataset(str(tmp_path / "tiny.npz"), frames[:300], 24.0)
    flags, why = sequence_training.lstm_sizing(tiny, flagfile, 0)
    assert flags == ["--batch_size=1"] and "one stream" in why


def test_across_cuts_plays_the_clips_as_one_dance_in_a_new_order_every_epoch(tmp_path):
    """--across_cuts: every epoch the training clips run end to end in an order drawn from the seed and the
    epoch, windows and state crossing the cuts (both ways over the epochs), each clip whole; the export and
    the workdir's claim record it (off: left out of the claim, so older runs resume)."""
    latents, clips = _two_clips()
    cfg = sequence_training.resolve_config(dict(TINY, batch_size=1, across_cuts=True))
    train, train_clips, _ = sequence_training.split(latents, cfg, clips)
    orders, count = set(), None
    for epoch in range(8):
        windows, fresh = sequence_training.epoch_windows(train, train_clips, cfg, epoch)
        count = count or len(windows)
        assert len(windows) == count == (len(train) - 1) // 10  # the same batches every epoch: one sequence
        assert fresh[0].all() and not fresh[1:].any()  # the state is carried through the whole epoch
        np.testing.assert_array_equal(windows[1:, :, 0], windows[:-1, :, -1])
        labels = _label(windows[:, 0])
        assert any(len(set(w)) == 2 for w in labels)  # a window spans the cut
        order = tuple(dict.fromkeys(labels.ravel()))
        orders.add(order)
        played = np.concatenate([windows[:, 0, :-1].reshape(-1, 3), windows[-1, 0, -1:]])
        whole = np.concatenate([train[train_clips == 1 - k] for k in order])  # label 0 is clip 1 (level -5)
        np.testing.assert_array_equal(played, whole[:len(played)])
        assert len(whole) - len(played) < 10
        again, _ = sequence_training.epoch_windows(train, train_clips, cfg, epoch)
        np.testing.assert_array_equal(again, windows)
    assert orders == {(0, 1), (1, 0)}

    np.save(tmp_path / "z.npy", latents)
    np.save(tmp_path / "z_clips.npy", clips)
    results = {}
    for across in (False, True):
        results[across] = sequence_training.train_and_evaluate(
            str(tmp_path / "z.npy"), str(tmp_path / f"run{across}"), str(tmp_path / f"saved{across}"),
            **dict(TINY, epochs=1, across_cuts=across))
    assert results[False]["history"][-1]["train_loss"] != results[True]["history"][-1]["train_loss"]
    assert savedmodels.record(results[True]["export_dir"])["config"]["across_cuts"] is True
    claims = {a: json.load(open(tmp_path / f"run{a}" / "config.json"))["settings"] for a in (False, True)}
    assert claims[True]["across_cuts"] is True
    assert not set(sequence_training._ADDED) & set(claims[False])  # settings added later: older runs resume
