"""Frames -> latent vectors with an exported encoder.

    python -m tf_dance.encode --data=runs/dancer.npz --encoder=saved_models/encoder --out=latents.npy

Writes float32 `[N, 128]` in frame order: the paper's `.npy` that the LSTM trains on, and beside
it `<out>_clips.npy` (the clip of every latent), `<out>_music.npz` (the dataset's music features, when it
has a soundtrack: what `train_lstm --music` conditions on) and `<out>_encoder.json` (which encoder, of which
autoencoder training, made them: the LSTM records it, and generate and evaluate refuse to mix
trainings). The library code is `tf_dance.savedmodels.encode_frames` (and `decode_latents` for
the way back).
"""

import os

import numpy as np
from absl import app, flags

from tf_dance import cli, data, savedmodels

FLAGS = flags.FLAGS


def define_flags(fv=FLAGS):
    """Defined only when run as a script, so importing this module adds no flags."""
    d = dict(flag_values=fv)
    flags.DEFINE_string("data", None, "Dataset .npz whose frames are encoded.", **d)
    flags.DEFINE_string("encoder", "saved_models/encoder",
                        "Encoder SavedModel: a version directory, or its root (the latest complete version whose "
                        "training also exported its decoder beside it, in ../decoder).", **d)
    flags.DEFINE_string("out", None, "Output .npy: float32 [N, latent_dim] in frame order.", **d)
    flags.DEFINE_integer("batch_size", 500, "Frames encoded per call.", lower_bound=1, **d)
    flags.DEFINE_bool("progress", True, "Show a progress bar.", **d)
    flags.register_validator("out", lambda v: v is None or v.endswith(".npy"), message="--out must end in .npy",
                             flag_values=fv)


@cli.main
def main(argv):
    del argv
    if not FLAGS.out:
        raise cli.UserError("no output given (--out=latents.npy)")
    cli.check_output(FLAGS.out, "--out")
    frames, fps, extras = data.load_dataset(FLAGS.data)
    encoder = savedmodels.load_encoder(savedmodels.resolve_encoder(FLAGS.encoder))
    latents = encoder(frames, FLAGS.batch_size, progress=FLAGS.progress).astype(np.float32)
    with cli.atomic_output(FLAGS.out) as tmp:  # the clip ids and the encoder's record land just before the latents
        np.save(tmp, latents)
        data.save_array(data.latent_clips_path(FLAGS.out), extras["clips"])
        data.save_latent_source(FLAGS.out, latents, encoder.path, encoder.record.get("training_id"))
        if "music" in extras:
            data.save_latent_music(FLAGS.out, latents, extras["music"], extras["music_names"], fps)
        elif os.path.exists(data.latent_music_path(FLAGS.out)):
            os.remove(data.latent_music_path(FLAGS.out))
    music = ", its music features" if "music" in extras else ""
    print(f"wrote {FLAGS.out} (and its clip ids, {cli.plural(len(data.clip_bounds(extras['clips'])), 'clip')}{music}): "
          f"{latents.shape[0]} x {latents.shape[1]} latents from {encoder.path}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
