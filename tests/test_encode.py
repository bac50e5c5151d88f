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
    assert sorted(os.listdir(tmp_path)) == ["models", "z.npy", "z_clips.npy", "z_encoder.json"]


def test_encode_skips_an_orphan_encoder_and_records_which_one_it_used(tmp_path, run_module, tiny_dataset):
    """A training killed between its two exports leaves encoder/2 without decoder/2: encode takes encoder/1,
    whose decoder exists, and writes beside the latents which encoder of which training made them."""
    import keras
    from tf_dance import autoencoder
    keras.utils.set_random_seed(0)
    encoder = autoencoder.build_encoder(54, 96, 1, [2, 2, 2, 2], latent_dim=4)
    decoder = autoencoder.build_decoder(54, 96, 1, [2, 2, 2, 2], latent_dim=4)
    models = str(tmp_path / "models")
    cli.export_version(models, "encoder", lambda d: autoencoder.export_encoder(encoder, d, {"training_id": "first"}))
    cli.export_version(models, "decoder", lambda d: autoencoder.export_decoder(decoder, d, {"training_id": "first"}))
    cli.export_version(models, "encoder", lambda d: autoencoder.export_encoder(encoder, d, {"training_id": "killed"}))
    out = str(tmp_path / "z.npy")
    for given in (models, os.path.join(models, "encoder")):
        r = run_module("tf_dance.encode", f"--data={tiny_dataset}", f"--encoder={given}", f"--out={out}",
                       "--noprogress")
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip().endswith(os.path.join(models, "encoder", "1")), r.stdout
        latents = data.load_latents(out)
        source = data.latent_source(out, latents)
        assert source["training_id"] == "first" and source["encoder"] == os.path.join(models, "encoder", "1")
        assert (source["frames"], source["dim"]) == (240, 4)
    np.save(out, latents + 1)  # latents replaced since: the record no longer describes them
    assert data.latent_source(out, latents + 1) == {}
