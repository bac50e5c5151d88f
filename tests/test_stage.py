"""Staging: the silhouette's box is measured, the pose centred, and put back where it was."""

import numpy as np

from tf_dance import autoencoder, stage


def _figure(h=54, w=96, x0=10, y0=8, fw=6, fh=30):
    frame = np.zeros((h, w, 1), np.float32)
    frame[y0:y0 + fh, x0:x0 + fw] = 1.0
    return frame


def test_box_of_a_rectangle_and_of_an_empty_frame():
    frames = np.stack([_figure(x0=10, y0=8, fw=6, fh=30), np.zeros((54, 96, 1), np.float32)])
    box = np.asarray(stage.measure(frames))
    np.testing.assert_allclose(box[0, 0] * 96, 12.5, atol=0.01)       # mass centroid across
    np.testing.assert_allclose(box[0, 1] * 54, 8 + 14.5, atol=1.0)    # middle of the rows
    np.testing.assert_allclose(box[0, 2] * 54, 30, atol=2.0)          # height, quantiles trimmed
    np.testing.assert_allclose(box[1], [47.5 / 96, 26.5 / 54, stage.TARGET], atol=1e-6)


def test_centred_poses_sit_in_the_middle_at_one_height_and_go_back_where_they_were(tiny_dancer):
    frames = tiny_dancer["frames"][::4].astype(np.float32) / 255.0
    box = np.asarray(stage.measure(frames))
    posed = np.asarray(stage.centre(frames, box))
    again = np.asarray(stage.measure(posed))
    np.testing.assert_allclose(again[:, 0], 0.495, atol=0.02)
    np.testing.assert_allclose(again[:, 2], stage.TARGET, atol=0.05)
    assert box[:, 0].std() > 5 * again[:, 0].std()  # the dancer drifts; its centred pose does not
    back = np.asarray(stage.place(posed, box))
    assert np.mean(autoencoder.frame_iou(frames >= 0.5, back >= 0.5)) > 0.95


def test_staged_models_export_frames_to_latent_and_back(tmp_path):
    import keras
    import tensorflow as tf

    from tf_dance import autoencoder
    enc = autoencoder.build_encoder(54, 96, 1, [4, 4, 8, 8], latent_dim=16)
    dec = autoencoder.build_decoder(54, 96, 1, [4, 4, 8, 8], latent_dim=16)
    staged_enc, staged_dec = stage.staged_encoder(enc), stage.staged_decoder(dec)
    frames = np.stack([_figure(x0=20), _figure(x0=70, fh=20)])
    z = np.asarray(staged_enc(frames))
    assert z.shape == (2, 16 + stage.BOX_DIMS)
    np.testing.assert_allclose(z[:, -3:], np.asarray(stage.measure(frames)), atol=1e-6)
    assert z[1, -3] > z[0, -3] + 0.4
    path = str(tmp_path / "dec.keras")
    staged_dec.save(path)
    again = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(again(z), staged_dec(z), atol=1e-6)
    autoencoder.export_decoder(staged_dec, str(tmp_path / "saved"))
    served = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    np.testing.assert_allclose(served(latent=tf.constant(z))["frames"], staged_dec(z), atol=1e-5)


def test_a_staged_autoencoder_trains_on_centred_poses_and_exports_frames_in_place(tiny_dataset, tmp_path):
    import tensorflow as tf

    from tf_dance import autoencoder_training, data
    result = autoencoder_training.train_and_evaluate(
        tiny_dataset, str(tmp_path / "work"), str(tmp_path / "models"), stage=True, steps=4, batch_size=8,
        learning_rates=[1e-3], lr_boundaries=[], filters=[4, 4, 8, 8], latent_dim=16, checkpoint_every=2,
        eval_pairs=20, verbose=0)
    frames, _, _ = data.load_dataset(tiny_dataset)
    x = frames[:6].astype(np.float32) / 255.0
    encoder = tf.saved_model.load(result["encoder_dir"]).signatures["serving_default"]
    decoder = tf.saved_model.load(result["decoder_dir"]).signatures["serving_default"]
    z = encoder(frames=tf.constant(x))["latent"].numpy()
    assert z.shape == (6, 16 + stage.BOX_DIMS)
    np.testing.assert_allclose(z[:, -3:], np.asarray(stage.measure(x)), atol=1e-5)
    assert decoder(latent=tf.constant(z))["frames"].shape == x.shape
    assert 0.0 <= result["metrics"]["iou"] <= 1.0
