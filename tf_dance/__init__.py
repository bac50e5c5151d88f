"""tf_dance: a Keras/TensorFlow port of 'Generating Dance Moves' (Huang, Jiang, Xiao, 2017).

Pipeline (one module per part of the paper):
  data        .npz datasets of 96x54 silhouette frames
  synthesize  the embedded defaults: a procedural silhouette dancer and the 10-d Perlin set
  video       video in and out (moviepy), GIFs and contact sheets
  autoencoder frames <-> 128-d latents (section 3.1)
  sequence_model  stateful LSTM regressor and the FNN baseline (sections 3.2-3.4)
  rollout     exporting the sequence model's serving signatures (section 3.5)
  savedmodels the one client for exported models: find, load once, encode, decode, step, roll out
  generation  making a dance (make_dance) and writing it (write_dance), in pieces for any length
  evaluate    numbers instead of eyes: freezing, motion, coverage, novelty (section 5)
"""

__version__ = "0.1.0"
