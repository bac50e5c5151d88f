"""The autoencoder: architecture, TF1 resize, the Keras file, the exported decoder, the losses (its training:
test_autoencoder_training.py)."""

import numpy as np
import pytest


def test_shapes_at_every_level():
    from tf_dance import autoencoder
    enc = autoencoder.build_encoder(54, 96, 3, [2, 3, 4, 5])
    dec = autoencoder.build_decoder(54, 96, 3, [2, 3, 4, 5])
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in enc.layers + dec.layers}
    expected = {
        "conv1": (54, 96, 2), "pool1": (27, 48, 2), "conv2": (27, 48, 3), "pool2": (14, 24, 3),
        "conv3": (14, 24, 4), "pool3": (7, 12, 4), "conv4": (7, 12, 5), "pool4": (4, 6, 5),
        "flatten": (120,), "latent": (128,), "expand": (120,), "unflatten": (4, 6, 5),
        "upsample4": (7, 12, 5), "deconv4": (7, 12, 5), "upsample3": (14, 24, 5), "deconv3": (14, 24, 4),
        "upsample2": (27, 48, 4), "deconv2": (27, 48, 3), "upsample1": (54, 96, 3), "deconv1": (54, 96, 2),
        "logits": (54, 96, 3), "frames": (54, 96, 3),
    }
    for name, shape in expected.items():
        assert shapes[name] == shape, (name, shapes[name], shape)
    out = dec(enc(np.random.rand(2, 54, 96, 3).astype(np.float32))).numpy()
    assert out.shape == (2, 54, 96, 3) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError):
        autoencoder.build_encoder(54, 96, 1, [8, 8, 8])


@pytest.mark.parametrize("src,dst", [((4, 6), (7, 12)), ((7, 12), (14, 24)), ((14, 24), (27, 48)),
                                     ((27, 48), (54, 96)), ((5, 9), (13, 4)), ((3, 3), (10, 7))])
def test_resize_matches_tf1(src, dst):
    import tensorflow as tf
    from tf_dance import autoencoder
    x = np.random.default_rng(0).normal(size=(2, *src, 3)).astype(np.float32)
    want = tf.compat.v1.image.resize_nearest_neighbor(x, dst, align_corners=False, half_pixel_centers=False)
    got = autoencoder.ResizeNearestTF1(*dst)(x)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_resize_differs_from_keras_and_compiles_with_xla():
    """Keras's half-pixel Resizing picks other pixels (why the layer exists); its gradient compiles."""
    import keras
    import tensorflow as tf
    from tf_dance import autoencoder
    x = tf.constant(np.arange(4 * 6, dtype=np.float32).reshape(1, 4, 6, 1))
    ours = autoencoder.ResizeNearestTF1(7, 12)
    assert not np.array_equal(ours(x).numpy(), keras.layers.Resizing(7, 12, interpolation="nearest")(x).numpy())

    @tf.function(jit_compile=True)
    def grad(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            y = tf.reduce_sum(ours(v) ** 2)
        return tape.gradient(y, v)

    counts = np.bincount(ours.source_indices(4, 7), minlength=4)[:, None] * \
        np.bincount(ours.source_indices(6, 12), minlength=6)[None, :]
    np.testing.assert_allclose(grad(x).numpy()[0, ..., 0], 2 * x.numpy()[0, ..., 0] * counts)


def test_keras_file_round_trip(tmp_path):
    import keras
    from tf_dance import autoencoder
    dec = autoencoder.build_decoder(54, 96, 1, [2, 2, 2, 2])
    dec.save(tmp_path / "d.keras")
    again = keras.models.load_model(tmp_path / "d.keras", safe_mode=True)
    z = np.random.default_rng(1).normal(size=(3, 128)).astype(np.float32)
    np.testing.assert_allclose(again(z).numpy(), dec(z).numpy(), rtol=1e-6)


@pytest.mark.parametrize("channels, filters, extra_conv, size", [
    (1, [8, 16, 32, 32], False, (54, 96)), (3, [2, 3, 4, 5], True, (54, 96)), (1, [2, 2, 2, 2], False, (53, 96))])
def test_the_exported_decoder_draws_the_models_frames(tmp_path, channels, filters, extra_conv, size):
    """The export serves the decoder with its last upsampling folded into the convolutions (odd sizes: the
    model as built); the frames are the Keras model's. Folded decoders also serve them computed in bfloat16."""
    import tensorflow as tf
    from tf_dance import autoencoder, savedmodels
    dec = autoencoder.build_decoder(*size, channels, filters, extra_conv=extra_conv)
    rng = np.random.default_rng(0)
    for layer in dec.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(scale=0.3, size=layer.bias.shape))
    assert (autoencoder._folded_decoder(dec) is None) == (size[0] % 2 == 1)
    autoencoder.export_decoder(dec, str(tmp_path / "d"))
    signatures = tf.saved_model.load(str(tmp_path / "d")).signatures
    z = rng.normal(size=(20, 128)).astype(np.float32)
    want = dec(z).numpy()
    np.testing.assert_allclose(signatures["serving_default"](latent=tf.constant(z))["frames"].numpy(), want, atol=1e-6)
    assert (savedmodels.DECODE_BFLOAT16 in signatures) == (size[0] % 2 == 0)
    if size[0] % 2 == 0:  # the same frames computed in bfloat16: close, and not the float32 graph again
        half = signatures[savedmodels.DECODE_BFLOAT16](latent=tf.constant(z))["frames"].numpy()
        assert half.shape == want.shape and 0 < np.abs(half - want).max() < 0.05


def test_the_decoder_decodes_in_the_precision_asked(tmp_path, monkeypatch):
    """`Decoder` uses the bfloat16 signature when asked, or with "auto" where the CPU has bfloat16; float32 when
    asked or without it; an export without that signature is refused for "bfloat16" in one line."""
    from tf_dance import autoencoder, autoencoder_training, cli, savedmodels
    dec = autoencoder.build_decoder(54, 96, 1, [2, 2, 2, 2])
    autoencoder.export_decoder(dec, str(tmp_path / "d"))
    autoencoder._export(dec, "latent", "frames", str(tmp_path / "plain"), None)  # serving_default only
    for native in (True, False):
        monkeypatch.setattr(autoencoder_training, "native_bfloat16", lambda: native)
        assert savedmodels.Decoder(str(tmp_path / "d"), "auto").precision == ("bfloat16" if native else "float32")
        assert savedmodels.Decoder(str(tmp_path / "plain"), "auto").precision == "float32"
    z = np.random.default_rng(1).normal(size=(7, 128)).astype(np.float32)
    frames = {p: savedmodels.Decoder(str(tmp_path / "d"), p)(z) for p in ("float32", "bfloat16")}
    assert frames["float32"].dtype == np.uint8 and frames["float32"].shape == frames["bfloat16"].shape == (7, 54, 96, 1)
    assert np.abs(frames["float32"].astype(int) - np.round(dec(z).numpy() * 255)).max() <= 1
    with pytest.raises(cli.UserError, match="no decode_bfloat16 signature"):
        savedmodels.Decoder(str(tmp_path / "plain"), "bfloat16")


def test_losses_match_tensorflow():
    """xent is TF1's sigmoid_cross_entropy_with_logits (stable at large logits); mse is on the sigmoid."""
    import tensorflow as tf
    from tf_dance import autoencoder
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=30, size=(3, 5, 4, 1)).astype(np.float32)
    target = (rng.random((3, 5, 4, 1)) > 0.5).astype(np.float32)
    want = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(target, logits), axis=(1, 2, 3))
    np.testing.assert_allclose(autoencoder.sigmoid_xent(target, logits).numpy(), want.numpy(), rtol=1e-5)
    want = np.mean((1 / (1 + np.exp(-logits.astype(np.float64))) - target) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(autoencoder.sigmoid_mse(target, logits).numpy(), want, rtol=1e-5)
    assert set(autoencoder.LOSSES) == {"xent", "mse"}
