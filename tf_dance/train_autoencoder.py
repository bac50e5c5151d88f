"""Trains the autoencoder (paper sections 3.1 and 3.6) and exports encoder and decoder SavedModels.

    python -m tf_dance.train_autoencoder --flagfile=flags/quick_autoencoder.flags \
        --data=runs/dancer.npz --workdir=runs/ae --export_dir=saved_models

Re-running with the same flags and workdir resumes from the last checkpoint. The training library
(`train_and_evaluate`) lives in tf_dance/autoencoder_training.py.
"""

import os
import sys

from absl import app, flags

from tf_dance import autoencoder_training, cli, training

FLAGS = flags.FLAGS
# Training speed of the paper's autoencoder (filters 32,32,32,32, batch 200, float32) on the 2-core machine,
# for the estimate printed when no flagfile is given: measured 2026-12-06 under a load average of ~6,
# 1.7-4.6 s per step of 200 frames (43-120 frames/s); a rough figure, the progress line then measures.
PAPER_FRAMES_PER_SECOND = 100


def define_flags():
    flags.DEFINE_string("data", None, "Dataset .npz (frames uint8 [N, H, W, C]) to train on, or a directory or "
                        "glob of .npz shards (streamed, for datasets larger than memory).")
    flags.DEFINE_string("workdir", "runs/autoencoder",
                        "Run directory: checkpoints, TensorBoard logs, evaluation, .keras models. "
                        "Re-running with the same workdir resumes.")
    flags.DEFINE_string("export_dir", "saved_models", "SavedModels go to <export_dir>/{encoder,decoder}/<version>.")
    autoencoder_training.define_flags(FLAGS)


def announce_defaults(argv):
    """Without a flagfile the settings are the paper's full run: say so, and for how long, before it starts."""
    if any(a.startswith(("--flagfile", "-flagfile")) for a in argv[1:]):
        return
    frames = FLAGS.steps * FLAGS.batch_size
    print(f"No --flagfile: the paper's settings (those not given as flags): {FLAGS.steps:,} steps of "
          f"{FLAGS.batch_size} frames, filters {','.join(map(str, FLAGS.filters))}, a {FLAGS.latent_dim}-d latent. "
          f"Estimated roughly {cli.duration(frames / PAPER_FRAMES_PER_SECOND)} on a 2-core CPU "
          f"(~{PAPER_FRAMES_PER_SECOND} frames/s at the paper's size). "
          "For a first run: --flagfile=flags/quick_autoencoder.flags (minutes).",
          flush=True)


@cli.main(interrupted=cli.RESUME)
def main(argv):
    del argv
    if not FLAGS.data:
        raise cli.UserError("no dataset (--data) given")
    cli.check_output(FLAGS.workdir, "--workdir", is_dir=True)
    cli.check_output(FLAGS.export_dir, "--export_dir", is_dir=True)
    for name in ("encoder", "decoder"):  # the directories the exports are written into, before training
        cli.check_output(os.path.join(FLAGS.export_dir, name), "--export_dir", is_dir=True)
    announce_defaults(sys.argv)
    print(f"TensorBoard logs: tensorboard --logdir {training.tensorboard_dir(FLAGS.workdir)}", flush=True)
    config = {k: FLAGS[k].value for k in autoencoder_training.SETTINGS if k in FLAGS}
    result = autoencoder_training.train_and_evaluate(FLAGS.data, FLAGS.workdir, FLAGS.export_dir, **config)
    if result is None:
        print("Worker done; the chief evaluates and exports.")
        return 0
    m = result["metrics"]
    print(f"held-out IoU {m['iou']:.3f}  MSE {m['mse']:.4f}  Spearman(pixel, latent) "
          f"{m['spearman_pixel_vs_latent']:.3f}  after {m['steps']} steps")
    print(f"encoder: {result['encoder_dir']}\ndecoder: {result['decoder_dir']}")
    print(f"evaluation: {os.path.join(FLAGS.workdir, 'eval.json')}, "
          f"{os.path.join(FLAGS.workdir, 'reconstructions.png')}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
