"""The readings where the paper is silent (docs/faithfulness.md): each source's choice, pinned.

Also the autoencoder's input pipeline for small footage: augmentation keyed by (seed, step), and
held-out stretches that lie inside clips.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

FRAMES = np.random.default_rng(0).random((6, 54, 96, 1)).astype(np.float32)


def _flagfile(name):
    from tf_dance import autoencoder_training
    return autoencoder_training.check_config(autoencoder_training.flagfile_settings(f"{ROOT}/flags/{name}"))


# ---- the autoencoder's readings


def test_convolutions_are_relu_3x3_same_and_the_expansion_is_relu():
    """Every source agrees: 3x3 ReLU convolutions, 2x2 `same` pooling, a ReLU dense expansion."""
    from tf_dance import autoencoder
    enc = autoencoder.build_encoder(54, 96, 1, [2, 2, 2, 2])
    dec = autoencoder.build_decoder(54, 96, 1, [2, 2, 2, 2])
    convs = [layer for layer in enc.layers + dec.layers if layer.__class__.__name__ == "Conv2D"]
    assert len(convs) == 9
    for layer in convs:
        c = layer.get_config()
        assert c["kernel_size"] == (3, 3) and c["padding"] == "same", layer.name
        assert c["activation"] == ("linear" if layer.name == "logits" else "relu"), layer.name
    for layer in enc.layers:
        if layer.name.startswith("pool"):
            assert layer.get_config()["pool_size"] == (2, 2) and layer.get_config()["padding"] == "same"
    assert dec.get_layer("expand").get_config()["activation"] == "relu"


def test_relu_code_is_never_negative_and_the_linear_code_is():
    from tf_dance import autoencoder
    for activation in ("linear", "relu"):
        enc = autoencoder.build_encoder(54, 96, 1, [2, 2, 2, 2], code_activation=activation)
        z = enc(FRAMES).numpy()
        assert enc.get_layer("latent").get_config()["activation"] == activation
        if activation == "relu":
            assert z.min() >= 0 and (z > 0).any()
        else:
            assert z.min() < 0
    with pytest.raises(ValueError, match="code_activation"):
        autoencoder.build_encoder(54, 96, 1, [2, 2, 2, 2], code_activation="tanh")


def test_tf1_dense_init_is_a_truncated_normal_of_stddev_0_1_with_bias_0_1():
    """tf.truncated_normal(stddev=0.1) redraws beyond 2 stddevs: |w| <= 0.2, std 0.1 x 0.880."""
    from tf_dance import autoencoder
    enc = autoencoder.build_encoder(54, 96, 1, [8, 8, 8, 32], dense_init="tf1")
    dec = autoencoder.build_decoder(54, 96, 1, [8, 8, 8, 32], dense_init="tf1")
    for layer in (enc.get_layer("latent"), dec.get_layer("expand")):
        kernel, bias = layer.get_weights()
        assert kernel.size > 90_000
        assert np.abs(kernel).max() <= 0.2 + 1e-6 and np.abs(kernel).max() > 0.19
        assert kernel.std() == pytest.approx(0.1 * 0.8796, rel=0.02) and abs(kernel.mean()) < 0.002
        np.testing.assert_array_equal(bias, np.float32(0.1))
    keras_default = autoencoder.build_encoder(54, 96, 1, [8, 8, 8, 32]).get_layer("latent").get_weights()
    limit = np.sqrt(6 / (768 + 128))  # Glorot uniform: fan in 4x6x32, fan out 128
    assert np.abs(keras_default[0]).max() <= limit and keras_default[0].std() == pytest.approx(limit / np.sqrt(3),
                                                                                             rel=0.02)
    assert not keras_default[1].any()


def test_extra_convolution_before_the_logits():
    from tf_dance import autoencoder
    plain = autoencoder.build_decoder(54, 96, 1, [3, 4, 4, 4])
    extra = autoencoder.build_decoder(54, 96, 1, [3, 4, 4, 4], extra_conv=True)
    assert "extra_conv" not in [layer.name for layer in plain.layers]
    conv = extra.get_layer("extra_conv")
    assert tuple(conv.output.shape[1:]) == (54, 96, 3) and conv.get_config()["activation"] == "relu"
    assert conv.input is extra.get_layer("deconv1").output and extra.get_layer("logits").input is conv.output
    assert extra.count_params() - plain.count_params() == 3 * 3 * 3 * 3 + 3
    assert extra(np.zeros((2, 128), np.float32)).shape == (2, 54, 96, 1)


def test_other_readings_export_the_same_signatures_and_load_with_plain_tensorflow(tiny_dataset, tmp_path):
    from tf_dance import autoencoder_training
    result = autoencoder_training.train_and_evaluate(
        tiny_dataset, str(tmp_path / "work"), str(tmp_path / "models"), verbose=0, steps=2, batch_size=8,
        learning_rates=[1e-3], lr_boundaries=[], filters=[2, 2, 2, 2], checkpoint_every=2, eval_pairs=10,
        code_activation="relu", dense_init="tf1", extra_conv=True, augment_flip=True, augment_shift=0.1,
        augment_scale=0.1)
    script = f"""
import sys, numpy as np, tensorflow as tf
enc = tf.saved_model.load({result['encoder_dir']!r}).signatures["serving_default"]
dec = tf.saved_model.load({result['decoder_dir']!r}).signatures["serving_default"]
assert {{k: v.shape.as_list() for k, v in enc.structured_input_signature[1].items()}} == {{"frames": [None, 54, 96, 1]}}
assert {{k: v.shape.as_list() for k, v in enc.structured_outputs.items()}} == {{"latent": [None, 128]}}
assert {{k: v.shape.as_list() for k, v in dec.structured_input_signature[1].items()}} == {{"latent": [None, 128]}}
assert {{k: v.shape.as_list() for k, v in dec.structured_outputs.items()}} == {{"frames": [None, 54, 96, 1]}}
z = enc(frames=tf.random.uniform([5, 54, 96, 1], seed=1))["latent"].numpy()
assert z.min() >= 0, z.min()
assert dec(latent=tf.constant(z))["frames"].shape == (5, 54, 96, 1)
assert "tf_dance" not in sys.modules
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


def test_readings_are_settings_with_the_ports_defaults():
    from tf_dance import autoencoder_training, cli
    defaults = autoencoder_training.check_config({})
    assert (defaults["code_activation"], defaults["dense_init"], defaults["extra_conv"]) == ("linear", "keras", False)
    assert not (defaults["augment_flip"] or defaults["augment_shift"] or defaults["augment_scale"])
    paper = _flagfile("paper_autoencoder.flags")
    assert {k: paper[k] for k in defaults if k.startswith(("augment", "code", "dense", "extra"))} == \
        {k: defaults[k] for k in defaults if k.startswith(("augment", "code", "dense", "extra"))}
    for bad, match in ((dict(code_activation="tanh"), "code_activation"), (dict(dense_init="he"), "dense_init"),
                       (dict(augment_shift=0.6), "augment_shift"), (dict(augment_scale=-0.1), "augment_scale"),
                       (dict(extra_conv="yes"), "extra_conv")):
        with pytest.raises(cli.UserError, match=match):
            autoencoder_training.check_config(bad)


@pytest.mark.parametrize("flag", ["--code_activation=tanh", "--dense_init=he", "--augment_shift=0.7"])
def test_cli_rejects_a_bad_reading(run_module, fails_cleanly, tmp_path, flag):
    fails_cleanly(run_module("tf_dance.train_autoencoder", f"--data={tmp_path}/none.npz", flag), flag[2:].split("=")[0])


def test_footage_flagfile_augments_and_parses():
    config = _flagfile("footage_autoencoder.flags")
    assert config["augment_flip"] and config["augment_shift"] > 0 and config["augment_scale"] > 0
    assert config["val_fraction"] > 0


# ---- the augmentation pipeline


def _blob_frames(n=8):
    """A bright off-centre rectangle well inside each frame, a different size in each frame."""
    frames = np.zeros((n, 54, 96, 1), np.uint8)
    for i in range(n):
        frames[i, 18:34 + i % 3, 30:44 + i] = 255
    return frames


def _batches(frames, steps, start=0, seed=0, **augment):
    import tensorflow as tf
    from tf_dance import autoencoder_training
    ds = autoencoder_training.train_batches(tf.constant(frames), np.arange(len(frames)), 4, seed, start, **augment)
    return [(x.numpy(), y.numpy()) for x, y in ds.take(steps)]


def _plain(frames, steps, start=0, seed=0):
    """The un-augmented batches the same order gives (the target is always the input)."""
    return [x for x, _ in _batches(frames, steps, start, seed)]


def test_no_augmentation_is_the_plain_gather():
    from tf_dance import autoencoder_training
    frames = _blob_frames()
    for x, y in _batches(frames, 3):
        np.testing.assert_array_equal(x, y)
        assert any(np.array_equal(x[0], f.astype(np.float32) / 255) for f in frames)
    assert autoencoder_training.SETTINGS["augment_flip"].default is False


def test_flip_mirrors_about_half_the_frames():
    frames = _blob_frames()
    plain = _plain(frames, 8)
    flipped = 0
    for (x, y), p in zip(_batches(frames, 8, flip=True), plain):
        np.testing.assert_array_equal(x, y)
        for a, b in zip(x, p):
            if np.array_equal(a, b[:, ::-1]):
                flipped += 1
            else:
                np.testing.assert_array_equal(a, b)
    assert 8 <= flipped <= 24  # of 32


def test_shift_moves_by_whole_pixels_within_the_bound():
    frames = _blob_frames()
    plain = _plain(frames, 6)
    moves = set()
    for (x, _), p in zip(_batches(frames, 6, shift=0.1), plain):
        for a, b in zip(x, p):
            found = [(dy, dx) for dy in range(-5, 6) for dx in range(-10, 11)
                     if np.array_equal(a, np.roll(b, (dy, dx), axis=(0, 1)))]
            assert found, "not a whole-pixel shift within 10% of the size"
            moves.add(found[0])
    assert len(moves) > 5


def test_scale_changes_the_area_within_the_bound():
    frames = _blob_frames()
    plain = _plain(frames, 6)
    ratios = []
    for (x, _), p in zip(_batches(frames, 6, scale=0.2), plain):
        for a, b in zip(x, p):
            ratios.append(a.sum() / b.sum())
    ratios = np.array(ratios)
    assert ratios.min() >= 0.8 ** 2 * 0.9 and ratios.max() <= 1.2 ** 2 * 1.1
    assert ratios.min() < 0.85 and ratios.max() > 1.15


def test_augmentation_is_keyed_by_seed_and_step_so_a_resumed_run_sees_the_same_batches():
    frames = _blob_frames()
    aug = dict(flip=True, shift=0.1, scale=0.1)
    unbroken = _batches(frames, 5, **aug)
    resumed = _batches(frames, 2, start=3, **aug)
    for (a, _), (b, _) in zip(unbroken[3:], resumed):
        np.testing.assert_array_equal(a, b)
    again = _batches(frames, 5, **aug)
    other = _batches(frames, 5, seed=1, **aug)
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(unbroken, again))
    assert not all(np.array_equal(a, b) for (a, _), (b, _) in zip(unbroken, other))


# ---- held-out stretches inside clips


def _stretches(held, clips):
    """[(first, last)] of each run of consecutive held-out indices, cut at clip boundaries."""
    breaks = np.flatnonzero((np.diff(held) != 1) | (np.diff(clips[held]) != 0))
    return list(zip(np.r_[held[0], held[breaks + 1]], np.r_[held[breaks], held[-1]]))


def test_held_out_stretches_lie_inside_clips_and_every_clip_gets_its_share():
    """Each clip lays its own grid of stretches from its first frame, so none straddles a cut."""
    from tf_dance import autoencoder_training
    clips = np.repeat([0, 1, 2], [500, 307, 200]).astype(np.int32)
    n, block = len(clips), 101 // 10
    starts = np.r_[0, np.flatnonzero(np.diff(clips)) + 1]

    def aligned(held):
        return all((first - starts[clips[first]]) % block == 0 for first, _ in _stretches(held, clips))

    for seed in range(5):
        train, held = autoencoder_training.split(n, 0.1, seed, clips)
        assert len(held) == 101 and np.array_equal(np.sort(np.r_[train, held]), np.arange(n))
        assert aligned(held)
        np.testing.assert_allclose(np.bincount(clips[held], minlength=3), [50, 30.7, 20], atol=1)
    one = autoencoder_training.split(n, 0.1, 3)
    same = autoencoder_training.split(n, 0.1, 3, np.zeros(n, np.int32))
    assert all(np.array_equal(a, b) for a, b in zip(one, same))
    # Without the clips, one grid runs over the whole video and its stretches cross the cuts.
    assert not all(aligned(autoencoder_training.split(n, 0.1, s)[1]) for s in range(5))


def test_training_holds_out_inside_the_datasets_clips(tmp_path):
    from tf_dance import autoencoder_training, cli, data
    frames = _blob_frames(120)
    path = data.save_dataset(str(tmp_path / "two.npz"), frames, 24.0,
                             clips=np.repeat([0, 1], [70, 50]).astype(np.int32))
    clips = data.load_dataset(path)[2]["clips"]
    train, held = autoencoder_training.split(len(frames), 0.25, 0, clips)
    assert np.bincount(clips[held]).tolist() == [18, 12]  # 17.5 and 12.5: the tie goes to the first
    with pytest.raises(cli.UserError, match="clips"):
        autoencoder_training.split(len(frames), 0.25, 0, clips[:-1])
