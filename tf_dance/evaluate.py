"""Measures a generated dance instead of eyeballing it (paper section 5.3, Figures 2, 5, 7).

    python -m tf_dance.evaluate --model_dir=saved_models --latents=runs/latents.npy \
        --data=runs/dancer.npz --out_dir=runs/eval            # roll out 6,000 frames, measure
    python -m tf_dance.evaluate --generated=out/dance_latents.npy --latents=runs/latents.npy \
        --out_dir=runs/eval                                   # measure an existing rollout

Writes <out_dir>/metrics.json (every number, the yes/no verdicts: frozen, sluggish, hectic,
narrow, off-distribution, copying, repetitive, and on the rollout's second half looping, narrow,
stuck in place; and the `goals` block with pass/fail per goal), report.md with the figures and
what each measure means, and the figures as PNGs (the decoded ones, on-screen motion, stage
coverage and stage range when a decoder is available). The training latents' clip ids (X_clips.npy beside
X.npy) keep every measure from counting a cut as motion.
A music-conditioned model (`train_lstm --music`) dances to --audio (default: a procedural song no
training heard) and `tf_dance.musicality` measures how it follows the music: beat alignment against
the data's own (and an --unconditioned model's on the same song), and whether its movement tempo
follows a song whose tempo steps up and down by 20% (--tempo_bpm). The library code is `tf_dance.metrics`
(numbers) and `tf_dance.report` (figures and report).
"""

import os

import numpy as np
from absl import app, flags

from tf_dance import cli, data, generation, music, musicality, savedmodels

FLAGS = flags.FLAGS


def define_flags():
    """The script's flags, defined only when it runs (importing the module defines none)."""
    flags.DEFINE_string("model_dir", None, "SavedModels root (holding dance_lstm/ and decoder/), or a dance_lstm "
                        "root or version directory, to roll out a dance. Not needed with --generated.")
    flags.DEFINE_string("generated", None, "Evaluate this rollout (.npy, [T, D] or [K, T, D]) instead of making one.")
    flags.DEFINE_string("latents", None, "Training latents (.npy/.npz) the dance is compared with; also the "
                        "source of the seed frames.")
    flags.DEFINE_integer("frames", 6000, "Frames to roll out (the paper mentions 60,000 as possible).",
                         lower_bound=2, upper_bound=10_000_000)
    flags.DEFINE_integer("seed_frames", 50, "Real frames that prime the LSTM before it generates.", lower_bound=1)
    flags.DEFINE_string("seed_index", "random", "First seed frame: an index into the latents, or 'random'.")
    flags.DEFINE_integer("random_seed", 0, "Seed for the seed window choice, rollout sampling and k-means.")
    flags.DEFINE_alias("seed", "random_seed")
    flags.DEFINE_float("temperature", None, "Sampling temperature of a mixture-head model (beyond the paper; "
                       "no effect on the paper's MSE model). Default: the model's recorded recipe.", lower_bound=0.0)
    flags.DEFINE_float("noise", None, "Std of Gaussian noise added to each fed-back frame, in units of the "
                       "training std (beyond the paper). Default: the model's recorded recipe.", lower_bound=0.0)
    flags.DEFINE_float("fps", None, "Frames per second of the latents (default: the --data dataset's, else 24).",
                       lower_bound=data.MIN_FPS, upper_bound=data.MAX_FPS)
    flags.DEFINE_string("data", None, "Dataset .npz: its fps, and its average frame for Figure 5.")
    flags.DEFINE_string("decoder", None, "Decoder (SavedModels root, decoder root or version) for the pictures, of "
                        "the autoencoder training the LSTM (or --latents) came from; default: that training's under "
                        "<model_dir>/decoder when present.")
    flags.DEFINE_string("out_dir", None, "Directory to write metrics.json, report.md and the figures into "
                        "(replaced atomically).")
    flags.DEFINE_integer("clusters", 32, "k of the pose k-means (coverage).", lower_bound=2, upper_bound=1024)
    flags.DEFINE_float("freeze_fraction", 0.1, "A frame is still below this fraction of the data's median motion.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("min_freeze_seconds", 2.0, "Still stretches shorter than this are never a freeze.",
                       lower_bound=0.0)
    flags.DEFINE_float("copy_fraction", 0.5, "A window is a near-copy when closer to a training window than this "
                       "fraction of the data's own median nearest-window distance.", lower_bound=0.0)
    flags.DEFINE_float("window_seconds", 1.0, "Length of the novelty windows.", lower_bound=0.05)
    flags.DEFINE_string("audio", None, "A music-conditioned model dances to this song (wav, mp3, or any file ffmpeg "
                        "reads; as long as it lasts unless --frames is given); default: a procedural song no training "
                        "heard, --frames long. With --generated: the song that dance was made to, for its beat "
                        "alignment.")
    flags.DEFINE_string("unconditioned", None, "A model without music (dance_lstm root or version) rolled out from the "
                        "same seed for as long, whose beat alignment on the same song is the chance level to beat.")
    flags.DEFINE_float("tempo_bpm", musicality.TEMPO_BPM, "A music-conditioned model also dances to a 90-second song "
                       "at this tempo that steps up and down by 20%, to measure whether its tempo follows; 0 = skip.",
                       lower_bound=0.0, upper_bound=music.MAX_BPM)
    flags.DEFINE_boolean("progress", True, "Print progress.")
    flags.DEFINE_boolean("allow_mismatch", False, "Use the --decoder/--latents given even when they come from another "
                         "autoencoder training than the LSTM's (or than each other); for deliberate experiments only. "
                         "By default the decoder of the LSTM's (or the latents') training is picked and any other "
                         "refused.")
    flags.mark_flag_as_required("latents")
    flags.mark_flag_as_required("out_dir")
    flags.register_validator("seed_index", lambda v: v == "random" or (v.isdigit()),
                             "--seed_index must be 'random' or a non-negative integer")
    flags.register_multi_flags_validator(
        ["model_dir", "generated"], lambda f: bool(f["model_dir"]) != bool(f["generated"]),
        "give exactly one of --model_dir (roll out a dance) and --generated (evaluate an existing one)")


def _decoder_dir(training, learner):
    """The decoder of autoencoder training `training` (see `savedmodels.pick`), or None without one."""
    if FLAGS.decoder:
        path, explicit = FLAGS.decoder, True
    elif FLAGS.model_dir and os.path.isdir(os.path.join(FLAGS.model_dir, savedmodels.DECODER)):
        path, explicit = FLAGS.model_dir, False
    else:
        return None
    return savedmodels.pick(path, "decoder", savedmodels.DECODER, training, explicit, learner, FLAGS.allow_mismatch)


def _number(value):
    return "-" if value is None else f"{value:.2f}"


def _music_fps(lstm, fps):
    learnt = (lstm.music or {}).get("fps")
    if learnt and FLAGS.fps and abs(FLAGS.fps - learnt) > 1e-3:
        raise cli.UserError(f"--fps {FLAGS.fps:g}: the model at {lstm.path} learnt its music at {learnt:g} fps")
    return float(learnt or fps)


def _song(fps, frames=None):
    """(features, label) of --audio (for `frames` frames: default as long as it lasts, or --frames), or of a
    procedural song no training heard."""
    if not FLAGS.audio:
        return musicality.held_out_song(FLAGS.frames, fps, FLAGS.random_seed)["features"], \
            f"a procedural song no training heard (seed {musicality.HELD_OUT_SEED + FLAGS.random_seed})"
    waveform = music.read_audio(FLAGS.audio)
    if waveform is None:
        raise cli.UserError(f"--audio: {FLAGS.audio} has no audio stream")
    if frames is None:
        seconds = len(waveform) / music.SAMPLE_RATE
        frames = FLAGS.frames if FLAGS["frames"].present else max(2, int(round(seconds * fps)))
    return music.features(waveform, fps, frames), os.path.basename(FLAGS.audio)


def _data_music(train):
    """The training latents' music when encode saved it beside them, else None."""
    found = data.load_latent_music(FLAGS.latents, train)
    return None if found is None else found[0]


def _unconditioned(roll):
    if not FLAGS.unconditioned:
        return None
    model = savedmodels.load_sequence_model(FLAGS.unconditioned)
    if model.music_features:
        raise cli.UserError(f"--unconditioned: the model at {model.path} dances to music; give one trained without")
    return lambda frames: roll(model, frames)


@cli.main
def main(argv):
    del argv
    cli.check_replaceable(FLAGS.out_dir, "evaluate", inputs=[FLAGS.latents, FLAGS.generated, FLAGS.data,
                                                             FLAGS.model_dir, FLAGS.decoder])
    train = data.load_latents(FLAGS.latents)
    clips = data.load_latent_clips(FLAGS.latents, len(train))
    frames, fps = None, FLAGS.fps
    if FLAGS.data:
        frames, data_fps, _ = data.load_dataset(FLAGS.data)
        fps = fps or data_fps
    fps = fps or 24.0
    source = data.latent_source(FLAGS.latents, train)
    arrays, music_report = {}, None
    if FLAGS.generated:
        decoder_dir = _decoder_dir(source.get("training_id"), f"{FLAGS.latents} (encoded by {source.get('encoder')})")
        generated = data.load_latents(FLAGS.generated, dancers=True)
        from tf_dance import report  # Keras and TensorFlow: once the inputs are checked
        report.check_memory(*(generated.shape if generated.ndim == 3 else (1, *generated.shape)))
        options = dict(generated=os.path.abspath(FLAGS.generated))
        if FLAGS.audio:  # the dance was made to --audio: how it keeps the beat
            dance = generated if generated.ndim == 2 else generated[0]
            song, label = _song(fps, len(dance))
            music_report = musicality.measure(None, fps, song, train, _data_music(train), clips=clips, tempo_bpm=None,
                                              label=label, dance=dance)
    else:
        lstm_dir = savedmodels.sequence_model_dir(FLAGS.model_dir)
        training = savedmodels.learnt_from(savedmodels.record(lstm_dir))
        savedmodels.check_latent_source(source, training, f"the sequence model {lstm_dir}", FLAGS.latents,
                                        FLAGS.allow_mismatch)
        decoder_dir = _decoder_dir(training or source.get("training_id"),
                                   f"the sequence model {lstm_dir} (trained on its latents)" if training else
                                   f"{FLAGS.latents} (encoded by {source.get('encoder')})")
        lstm = savedmodels.load_sequence_model(lstm_dir)
        from tf_dance import report
        temperature, noise = lstm.sampling(FLAGS.temperature, FLAGS.noise)
        report.check_memory(1, FLAGS.frames, lstm.dim)
        start, = generation.choose_seeds(len(train), FLAGS.seed_frames, FLAGS.seed_index, 1, FLAGS.random_seed,
                                          clips=clips)
        if FLAGS.progress:
            print(f"rolling out {FLAGS.frames} frames with {lstm.path} (temperature {temperature:g}, noise "
                  f"{noise:g}{lstm.controls_text()}), primed on latents {start}..{start + FLAGS.seed_frames - 1}",
                  flush=True)
        seed = train[start:start + FLAGS.seed_frames]

        def roll(model, frames, song=None):
            generated, done = np.empty((frames, model.dim), np.float32), 0
            own = (temperature, noise) if model is lstm else (None, None)  # another model keeps its own recipe
            for piece in model.stream(seed, frames, *own,
                                      random_seed=FLAGS.random_seed, music=song):
                generated[done:done + piece.shape[1]] = piece[0]
                done += piece.shape[1]
            return generated

        if lstm.music_features:
            fps = _music_fps(lstm, fps)
            song, label = _song(fps)
            unconditioned = _unconditioned(roll)
            generated = roll(lstm, len(song), song)
            music_report = musicality.measure(
                lambda features: roll(lstm, len(features), features), fps, song, train, _data_music(train),
                clips=clips, unconditioned=unconditioned, tempo_bpm=FLAGS.tempo_bpm, seed=FLAGS.random_seed,
                label=label, dance=generated)
        else:
            if FLAGS.audio:
                raise cli.UserError(f"--audio: the model at {lstm.path} was trained without music; evaluate it "
                                    "without --audio")
            generated = roll(lstm, FLAGS.frames)
        arrays["generated"] = generated
        options = dict(model_dir=os.path.abspath(lstm.path), frames=FLAGS.frames, seed_frames=FLAGS.seed_frames,
                       seed_index=start, random_seed=FLAGS.random_seed, temperature=temperature, noise=noise,
                       **lstm.controls)
    options.update(latents=os.path.abspath(FLAGS.latents), fps=fps,
                   decoder=decoder_dir and os.path.abspath(decoder_dir))
    result = report.evaluate_dance(
        generated, train, fps, FLAGS.out_dir, decoder_dir=decoder_dir, data_frames=frames, options=options,
        arrays=arrays, progress=FLAGS.progress, music=music_report,
        reference_options=dict(clips=clips,
                               clusters=FLAGS.clusters, seed=FLAGS.random_seed, window_seconds=FLAGS.window_seconds,
                               freeze_fraction=FLAGS.freeze_fraction, min_freeze_seconds=FLAGS.min_freeze_seconds,
                               copy_fraction=FLAGS.copy_fraction))
    verdicts = ", ".join(f"{k}: {'YES' if v else 'no'}" for k, v in result["verdicts"].items())
    print(f"verdicts: {verdicts}")
    state = {True: "met", False: "MISSED", None: "not measured"}
    print("goals (second half): " + ", ".join(f"{k}: {state[g['passed']]}" for k, g in result["goals"].items()))
    if music_report:
        follow = music_report["tempo_follow"]
        print(f"music: beat alignment {_number(music_report['alignment'])} (data "
              f"{_number(music_report['data_alignment'])}, unconditioned "
              f"{_number(music_report['unconditioned_alignment'])})"
              + (f", tempo ratios {', '.join(f'{r:.2f}' for r in follow['ratios'])} for "
                 f"{', '.join(f'{r:.2f}' for r in follow['expected'])}" if follow else ""))
    print(f"report: {os.path.join(FLAGS.out_dir, 'report.md')}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
