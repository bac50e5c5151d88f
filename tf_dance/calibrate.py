"""Exports a finished `train_lstm` run again, without training: a new rollout recipe or a new calibration.

    python -m tf_dance.calibrate --workdir=runs/lstm --export_dir=saved_models \\
        --calibrate_frames=12000 --calibrate_noise=0.1,0.2 [--calibrate_decoder=saved_models/decoder]

Reads the run in --workdir (the epoch its training chose, kept as model.keras, and its settings,
recorded in trained.json) and exports it as the next version under <export_dir>/<export_name>, as
`train_lstm` does at the end of training: with the --rollout_* recipe, or with --calibrate_frames the
recipe that `calibration` picks among the --calibrate_* candidates on the run's training latents
(--latents, by default the file it trained on). Every train_lstm setting is accepted, so the run's
own flagfile can be given; settings not given are the run's, and only the rollout_*, calibrate_* and
export_name settings may differ from them (the others need training). The library function is
`sequence_training.export_run`.
"""

import os

from absl import app, flags

from tf_dance import cli, savedmodels, sequence_training

FLAGS = flags.FLAGS


def define_flags():
    """The script's flags, defined only when it runs (importing the module defines none)."""
    flags.DEFINE_string("workdir", None, "A finished train_lstm run (its --workdir, holding trained.json and "
                        "model.keras).")
    flags.DEFINE_string("export_dir", "saved_models", "Root of the versioned SavedModel exports.")
    flags.DEFINE_string("latents", None, "The latents the run trained on, for --calibrate_frames (default: the file "
                        "the run recorded; other latents are refused).")
    sequence_training.define_flags(FLAGS)
    flags.register_validator("workdir", bool, "--workdir (the train_lstm run to export) must be given")
    flags.register_validator("export_dir", bool, "--export_dir must not be empty")
    flags.register_validator("latents", lambda v: v is None or bool(v), "--latents must not be empty")


@cli.main
def main(argv):
    del argv
    trained = sequence_training.read_trained(FLAGS.workdir)
    if FLAGS.latents:
        cli.require_file(FLAGS.latents, "latents file (--latents)")
    name = FLAGS.export_name if FLAGS["export_name"].present else trained["config"].get("export_name")
    cli.check_output(FLAGS.export_dir, "--export_dir", is_dir=True)
    cli.check_output(os.path.join(FLAGS.export_dir, name or f"dance_{trained['config'].get('model')}"),
                     "--export_dir", is_dir=True)
    given = {name: FLAGS[name].value for name in sequence_training.SETTINGS if FLAGS[name].present}
    final = sequence_training.export_run(FLAGS.workdir, FLAGS.export_dir, FLAGS.latents,
                                         load_decoder=savedmodels.calibration_decoder, **given)
    print(f"Done: {final} (the run's epoch {trained.get('best_epoch')}, not trained again)")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
