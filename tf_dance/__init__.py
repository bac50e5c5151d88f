"""tf_dance: a Keras/TensorFlow port of 'Generating Dance Moves' (Huang, Jiang, Xiao, 2017).

96x54 silhouette frames -> a conv autoencoder -> 128-d latents -> a stateful LSTM -> a rollout of new
latents -> decoded video. Scripts are verbs (`python -m tf_dance.<verb>`, flags defined only when run);
libraries are nouns, flag-free and importable together.

Scripts, in pipeline order:
  synthesize            the embedded data as a dataset .npz: the procedural dancer or the Perlin set
  prepare_video         real dance footage -> a dataset .npz of silhouette frames
  train_autoencoder     trains the autoencoder and exports encoder and decoder SavedModels (section 3.1)
  encode                a dataset's frames -> latent vectors, through an exported encoder
  train_lstm            trains the next-latent LSTM (or the FNN baseline) and exports it (sections 3.2-3.4)
  calibrate             exports a trained LSTM run again with a new sampling recipe, without training
  generate              a new dance video from the exported models (section 3.5)
  evaluate              measures a generated dance and writes the report (section 5)
  demo                  the whole pipeline in one command, on the synthetic dancer or your own footage
  bench                 every speed figure of BENCHMARKS.md in one run

Models and training:
  autoencoder           the conv autoencoder, frame <-> latent, its SavedModel export, per-frame IoU (3.1)
  stage                 where the dancer is on the stage, apart from the pose: box, centring, placing back
  autoencoder_training  the library behind train_autoencoder: batches, resume, evaluation, export
  sequence_model        the stateful LSTM and the FNN baseline, with a fused, hand-differentiated LSTM
  sequence_training     the library behind train_lstm: char-rnn streams, resume, export
  config                one settings mechanism for both trainers: flags, checks and flagfile reading
  training              what both trainers share: tf.distribute strategies, checkpoints, workdir claims, logs
  rollout               exporting the sequence model's serving signatures: step, rollout, prime, continue
  controls              the sampling controls, declared once: defaults, bounds, help, calibration grid
  calibration           the rollout recipe chosen for each trained model by measuring its own dances
  generation            making a dance (make_dance) and writing it (write_dance), in pieces for any length (3.5)

Evaluation and I/O:
  metrics               numbers instead of eyes: freezing, motion, coverage, novelty, repetition; Spearman
  report                the evaluation report: metrics.json, report.md and the paper's figures
  savedmodels           the one client for exported models: find, load once, encode, decode, step, roll out
  data                  the dataset format shared by every step: .npz with uint8 frames and fps
  dancer                the procedural silhouette dancer, the stand-in for the paper's footage
  soundtrack            the procedural song the dancer can dance to: changing tempo, accents, drums, bass
  music                 a soundtrack's per-frame music features: onset, beats, tempo, spectral bands
  musicality            how a dance follows its music: beat alignment, tempo following, their goals
  perlin                Perlin noise and the paper's 10-d Perlin sanity set (section 5.3)
  video                 video in and out: ffmpeg decoding, mp4/GIF writers, contact sheets
  cli                   the scripts' plumbing: one-line errors, atomic outputs, versioned exports
"""

__version__ = "0.1.0"

import sys as _sys  # noqa: E402

from tf_dance import cli as _cli  # noqa: E402

_cli.quiet_tensorflow()
if _sys.argv[:1] == ["-m"]:  # the package is being imported to run `python -m tf_dance.<script>`
    _cli.quiet_interrupts()
