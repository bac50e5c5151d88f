"""Trains the next-latent model (paper sections 3.2-3.4) and exports it as a SavedModel.

    python -m tf_dance.train_lstm --flagfile=flags/paper_lstm.flags \\
        --latents=runs/latents.npy --workdir=runs/lstm --export_dir=saved_models [--model=lstm|fnn]

Training follows char-rnn: contiguous streams with the LSTM state carried across batches, Adam,
gradients clipped elementwise at --grad_clip (char-rnn's clamp; --clip=global_norm rescales by the
global norm instead), learning rate x --lr_decay per epoch after --lr_decay_after.
Several clips (the `_clips.npy` that `encode` writes beside the latents) are trained on without
crossing a cut; the export is the epoch with the best validation loss (--patience stops early).
With --calibrate_frames the export's rollout recipe is the one that measured best on this trained
model (tf_dance/calibration.py; --calibrate_decoder adds the on-screen measures).
Re-running with the same flags resumes from the last finished epoch in --workdir. The export
goes to <export_dir>/dance_<model>/<next version>/ (signatures: see tf_dance/rollout.py); `calibrate`
exports a finished run again with another rollout recipe or calibration, without training.
The training library (`train_and_evaluate`) lives in tf_dance/sequence_training.py.
"""

import sys

import os

from absl import app, flags

from tf_dance import cli, data, savedmodels, sequence_training, training
from tf_dance.sequence_training import SETTINGS, train_and_evaluate

FLAGS = flags.FLAGS
# Training speed of the paper's 2 x 600 LSTM (batch 5, 50-step windows, the fused XLA step) on the 2-core
# reference machine (BENCHMARKS.md, "Sequence models"), for the estimate printed when no flagfile is given.
PAPER_FRAMES_PER_SECOND = 3000


def define_flags():
    flags.DEFINE_string("latents", None,
                        "Latent sequence: the encoder's .npy [N, D] or an .npz with `latents`/`vectors`.")
    flags.DEFINE_string("workdir", "runs/lstm", "Checkpoints, TensorBoard logs, history.json and model.keras go here.")
    flags.DEFINE_string("export_dir", "saved_models", "Root of the versioned SavedModel exports.")
    sequence_training.define_flags(FLAGS)


def announce_defaults(argv):
    """Without a flagfile the settings are the paper's (its MSE head froze): say so, and for how long."""
    if any(a.startswith(("--flagfile", "-flagfile")) for a in argv[1:]):
        return
    frames = int(len(data.load_latents(FLAGS.latents)) * FLAGS.train_frac)
    seconds = FLAGS.epochs * frames / PAPER_FRAMES_PER_SECOND
    print(f"No --flagfile: the paper's settings (those not given as flags): a {FLAGS.num_layers} x {FLAGS.units} "
          f"{FLAGS.model.upper()} with the {FLAGS.head} head, {FLAGS.epochs} epochs of {frames:,} frames at batch "
          f"{FLAGS.batch_size}. Estimated {cli.duration(seconds)} on a 2-core CPU (~{PAPER_FRAMES_PER_SECOND:,} "
          "frames/s at the paper's size); the paper's MSE head tends to freeze (its Figure 7). "
          "For the demo's mixture-density LSTM: --flagfile=flags/quick_lstm.flags.", flush=True)


@cli.main(interrupted=cli.RESUME)
def main(argv):
    del argv
    cli.require_file(FLAGS.latents, "latents file (--latents)")
    cli.check_output(FLAGS.workdir, "--workdir", is_dir=True)
    cli.check_output(FLAGS.export_dir, "--export_dir", is_dir=True)
    cli.check_output(os.path.join(FLAGS.export_dir, FLAGS.export_name or f"dance_{FLAGS.model}"), "--export_dir",
                     is_dir=True)  # where the export goes, before training
    announce_defaults(sys.argv)
    print(f"TensorBoard logs: tensorboard --logdir {training.tensorboard_dir(FLAGS.workdir)}", flush=True)
    result = train_and_evaluate(FLAGS.latents, FLAGS.workdir, FLAGS.export_dir,
                                load_decoder=savedmodels.calibration_decoder,
                                **{name: FLAGS[name].value for name in SETTINGS})
    if result is None:
        print("Worker done; the chief exports.")
        return 0
    val = "-" if result["val_loss"] is None else f"{result['val_loss']:.5g}"
    # A mixture head's loss is a negative log-likelihood that can go below zero: no ratio then.
    drop = (f" ({result['loss_drop']:.0f}x below the first batch)"
            if result["first_loss"] > 0 and result["train_loss"] > 0 else "")
    best = ("" if result["best_val_loss"] is None else
            f" (epoch {result['best_epoch']}: the best validation loss, {result['best_val_loss']:.5g})")
    print(f"Done: {result['epochs']} epochs, train loss {result['train_loss']:.5g}{drop}, val loss {val}, "
          f"{result['frames_per_second']:.0f} frames/s. Model: {result['export_dir']}{best}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
