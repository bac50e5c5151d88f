"""`autoencoder_training`: the autoencoder actually learns, so a silent regression in the loss, the
batches or the optimizer fails a test instead of only lowering a number nobody reads."""

import numpy as np

# flags/tiny_autoencoder.flags, but 8 filters at every level (with 4 at full resolution, seeds 2 and 3
# stayed at IoU 0 even after 1,000 steps) and 300 steps in one epoch.
LEARN = dict(steps=300, batch_size=16, learning_rates=[3e-3], lr_boundaries=[], filters=[8, 8, 8, 8],
             latent_dim=128, val_fraction=0.1, checkpoint_every=300, eval_pairs=50, precision="float32",
             seed=0)


def test_a_few_hundred_steps_beat_the_untrained_model(tiny_dataset, tiny_dancer, tmp_path):
    """Held-out IoU after 300 steps against the same model at its initial weights (measured: 0.72
    vs 0.05) and against the best cut of the mean training frame (0.28), which a decoder that
    ignored its latent could at most reach."""
    import keras

    from tf_dance import autoencoder, autoencoder_training

    frames = tiny_dancer["frames"]
    config = autoencoder_training.check_config(LEARN)
    train, held = autoencoder_training.split(len(frames), config["val_fraction"], config["seed"])
    keras.utils.set_random_seed(config["seed"])  # as training starts: the very weights it starts from
    encoder, decoder, _ = autoencoder_training.build(frames.shape[1:], config)
    untrained = autoencoder_training.evaluate(encoder, decoder, frames[held], pairs=config["eval_pairs"])

    result = autoencoder_training.train_and_evaluate(tiny_dataset, str(tmp_path / "work"), str(tmp_path / "models"),
                                                     verbose=0, **LEARN)
    trained = result["metrics"]
    assert trained["steps"] == LEARN["steps"] and trained["held_out"] and trained["eval_frames"] == len(held)
    assert trained["iou"] >= untrained["iou"] + 0.4, (trained["iou"], untrained["iou"])
    assert trained["mse"] < untrained["mse"] / 4, (trained["mse"], untrained["mse"])

    x = frames[held] / 255.0
    mean = frames[train].mean(axis=0) / 255.0
    best_mean = max(np.mean(autoencoder.frame_iou(x >= 0.5, np.broadcast_to(mean >= cut, x.shape)))
                    for cut in (0.1, 0.2, 0.3, 0.5))
    assert trained["iou"] >= best_mean + 0.2, (trained["iou"], best_mean)
