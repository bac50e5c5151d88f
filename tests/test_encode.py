"""encode: the latents and, beside them, the clip of every latent."""

import os

import numpy as np

from tf_dance import cli, data


def test_encode_writes_clip_ids_beside_the_latents(tmp_path, run_module, two_clip_dataset):
    import keras
    from tf_dance import autoencoder
    keras.utils.set_random_seed(0)
    encoder = autoencoder.build_encoder(54, 96, 1, [2, 2, 2, 2], latent_dim=4)
    cli.export_version(str(tmp_path / "models"), "encoder",
                       lambda d: autoencoder.export_encoder(encoder, d))
    out = tmp_path / "z.npy"
    r = run_module("tf_dance.encode", f"--data={two_clip_dataset}",
                   f"--encoder={tmp_path / 'models' / 'encoder'}", f"--out={out}", "--noprogress")
    assert r.returncode == 0, r.stderr[-2000:]
    _, _, extras = data.load_dataset(two_clip_dataset)
    latents = data.load_latents(str(out), dim=4)
    clips = np.load(tmp_path / "z_clips.npy", allow_pickle=False)
    assert clips.dtype == np.int32 and len(clips) == len(latents)
    np.testing.assert_array_equal(clips, extras["clips"])
    np.testing.assert_array_equal(data.load_latent_clips(str(out), len(latents)), extras["clips"])
    assert len(data.clip_bounds(clips)) == 2
    assert sorted(os.listdir(tmp_path)) == ["models", "z.npy", "z_clips.npy"]
