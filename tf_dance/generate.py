"""Generates a new dance video from the exported SavedModels (paper section 3.5, Figure 2).

    python -m tf_dance.generate --model_dir=saved_models --data=runs/dancer.npz --frames=600 \
        --seed_frames=50 --seed_index=random --out=out/dance.mp4

Primes the LSTM on --seed_frames real frames of the dataset (encoded with the encoder, or
taken from --latents), rolls out --frames new latents, decodes them and writes, next to --out:
dance.mp4 (the dataset's fps unless --fps), dance.gif (the first 600 frames), dance_sheet.png
(every 4th of the first 256 frames, like Figure 2) and dance_latents.npy (for
`python -m tf_dance.evaluate --generated=...`). --num_dancers=K rolls out K dances in one batch
and tiles them side by side in the same video (latents saved as [K, T, D]).
--temperature and --noise default to the sampling recipe recorded in the sequence model's export.
A music-conditioned model (`train_lstm --music`) dances to a song: --audio=song.wav|.mp3|video gives
it, its music features are computed as `prepare_video` computes a clip's, the dance lasts as long as
the song (or --frames) and the mp4 plays the song; such a model refuses to dance without --audio,
and a model without music refuses --audio.
The library code is `tf_dance.generation` (`make_dance`, `dance_chunks`, `write_dance`) over
`tf_dance.savedmodels`; the dance is made and written in pieces, so any length fits in memory.
"""

import json

import numpy as np
from absl import app, flags

from tf_dance import cli, data, generation, music, savedmodels

FLAGS = flags.FLAGS


def define_flags():
    """The script's flags, defined only when it runs (importing the module defines none)."""
    flags.DEFINE_string("model_dir", "saved_models", "SavedModels root holding dance_lstm/, decoder/ and encoder/ "
                        "(the latest complete LSTM, and the encoder and decoder of the autoencoder training it "
                        "learnt from).")
    flags.DEFINE_string("lstm", None,
                        "Sequence model (dance_lstm root or version dir); default <model_dir>/dance_lstm.")
    flags.DEFINE_string("encoder", None, "Encoder (root or version dir) of the LSTM's autoencoder training; default: "
                        "that training's under <model_dir>/encoder.")
    flags.DEFINE_string("decoder", None, "Decoder (root or version dir) of the LSTM's autoencoder training; default: "
                        "that training's under <model_dir>/decoder.")
    flags.DEFINE_string("data", None, "Dataset .npz whose frames seed the LSTM and whose fps the video plays at.")
    flags.DEFINE_string("latents", None, "Encoded latents of --data (.npy): seed from these instead of running the "
                        "encoder (then --data is optional).")
    flags.DEFINE_string("out", "out/dance.mp4", "Output video; the GIF, sheet and latents are named after it.")
    flags.DEFINE_string("audio", None, "A song to dance to (wav, mp3, or any video or audio file ffmpeg reads), for a "
                        "music-conditioned model (train_lstm --music): the dance lasts as long as the song unless "
                        "--frames is given, and the mp4 plays it.")
    flags.DEFINE_integer("frames", 600, "Frames to generate per dancer (the paper: 600; with --audio, default: as "
                         "long as the song).", lower_bound=1,
                         upper_bound=10_000_000)
    flags.DEFINE_integer("seed_frames", 50, "Real frames that prime the LSTM (char-rnn priming).", lower_bound=1)
    flags.DEFINE_string("seed_index", "random", "First seed frame: an index into the dataset, or 'random' (a "
                        "different window for each dancer, drawn with --random_seed).")
    flags.DEFINE_integer("num_dancers", 1, "Dances generated in one batch and tiled side by side.", lower_bound=1,
                         upper_bound=64)
    flags.DEFINE_float("fps", None, "Frame rate of the video (default: the dataset's, else 24).",
                       lower_bound=data.MIN_FPS, upper_bound=data.MAX_FPS)
    flags.DEFINE_integer("scale", 1, "Integer upscaling of each pixel for viewing.", lower_bound=1, upper_bound=20)
    flags.DEFINE_float("temperature", None, "Sampling temperature of a mixture-head model (a step beyond the paper; "
                       "no effect on its MSE model). Default: the model's recorded recipe.", lower_bound=0.0)
    flags.DEFINE_float("noise", None, "Std of Gaussian noise added to each fed-back frame, in units of the training "
                       "std (a step beyond the paper: keeps a deterministic model from settling). Default: the "
                       "model's recorded recipe.", lower_bound=0.0)
    flags.DEFINE_integer("random_seed", 0, "Seed for the seed windows and the rollout's sampling and noise.")
    flags.DEFINE_alias("seed", "random_seed")
    flags.DEFINE_integer("batch_size", 500, "Frames decoded per batch.", lower_bound=1)
    flags.DEFINE_enum("decode_precision", "auto", list(savedmodels.DECODE_PRECISIONS), "Decode in float32 (the "
                      "decoder's serving_default), in bfloat16 (its decode_bfloat16 signature: about 1.8x faster "
                      "where the CPU computes bfloat16, frames a few gray levels apart), or auto: bfloat16 where "
                      "the CPU has it natively.")
    flags.DEFINE_boolean("progress", True, "Print progress.")
    flags.DEFINE_boolean("allow_mismatch", False, "Use the --encoder/--decoder/--latents given even when they come "
                         "from another autoencoder training than the one the LSTM learnt from (the dance is then "
                         "usually noise); for deliberate experiments only. By default the LSTM's own training is "
                         "picked and any other refused.")
    flags.register_validator("seed_index", lambda v: v == "random" or v.isdigit(),
                             "--seed_index must be 'random' or a non-negative integer")
    flags.register_validator("out", lambda v: bool(v) and v.lower().endswith(".mp4"), "--out must end in .mp4")
    flags.register_multi_flags_validator(["data", "latents"], lambda f: bool(f["data"] or f["latents"]),
                                         "give --data (frames to seed from) or --latents")


def _say(message):
    if FLAGS.progress:
        print(message, flush=True)


def _song(lstm, fps):
    """(dict(waveform, features) of --audio or None, frames to generate, fps), checked against the model."""
    if not lstm.music_features:
        if FLAGS.audio:
            raise cli.UserError(f"--audio: the model at {lstm.path} was trained without music (train_lstm --music "
                                "makes one that dances to a song); generate without --audio")
        return None, FLAGS.frames, fps
    if not FLAGS.audio:
        raise cli.UserError(f"the model at {lstm.path} dances to music: give it a song with "
                            "--audio=song.wav|.mp3|video")
    learnt = lstm.music or {}
    if learnt.get("names") not in (None, list(music.NAMES)):
        raise cli.UserError(f"the model at {lstm.path} learnt other music features ({learnt['names']}) than this "
                            f"version computes ({list(music.NAMES)}); retrain it")
    if learnt.get("fps") and not FLAGS["fps"].present:
        fps = float(learnt["fps"])
    elif learnt.get("fps") and abs(fps - learnt["fps"]) > 1e-3:
        raise cli.UserError(f"--fps {fps:g}: the model at {lstm.path} learnt its music at {learnt['fps']:g} fps, and "
                            "at another rate its dance would not keep time; leave --fps out")
    waveform = music.read_audio(FLAGS.audio)
    if waveform is None:
        raise cli.UserError(f"--audio: {FLAGS.audio} has no audio stream")
    frames = FLAGS.frames if FLAGS["frames"].present else max(1, int(round(len(waveform) / music.SAMPLE_RATE * fps)))
    return dict(waveform=waveform, features=music.features(waveform, fps, frames)), frames, fps


@cli.main
def main(argv):
    del argv
    cli.check_output(FLAGS.out, "--out")
    paths = generation.check_outputs(FLAGS.out)
    dataset = latents = data_fps = None
    if FLAGS.data:
        dataset, data_fps, extras = data.load_dataset(FLAGS.data)
    if FLAGS.latents:
        latents = data.load_latents(FLAGS.latents)
        if dataset is not None and len(latents) != len(dataset):
            raise cli.UserError(f"{FLAGS.latents} has {len(latents)} latents but {FLAGS.data} has {len(dataset)} "
                                "frames: they must come from the same video")
    source = latents if latents is not None else dataset
    fps = float(FLAGS.fps or data_fps or 24.0)
    clips = extras["clips"] if dataset is not None else data.load_latent_clips(FLAGS.latents, len(latents))
    starts = generation.choose_seeds(len(source), FLAGS.seed_frames, FLAGS.seed_index, FLAGS.num_dancers,
                                     FLAGS.random_seed, clips=clips)
    parts = dict(lstm=FLAGS.lstm, decoder=FLAGS.decoder, encoder=FLAGS.encoder, need_encoder=latents is None,
                 allow_mismatch=FLAGS.allow_mismatch)
    lstm_dir, decoder_dir, _ = savedmodels.model_dirs(FLAGS.model_dir, **parts)
    if latents is not None:  # from the records, before anything is loaded
        training = savedmodels.learnt_from(savedmodels.record(lstm_dir)) or savedmodels.training_id(decoder_dir)
        savedmodels.check_latent_source(data.latent_source(FLAGS.latents, latents), training,
                                        f"{lstm_dir} (and {decoder_dir})", FLAGS.latents, FLAGS.allow_mismatch)
    models = savedmodels.load_models(FLAGS.model_dir, **parts, decode_precision=FLAGS.decode_precision)
    song, frames, fps = _song(models.lstm, fps)
    temperature, noise = models.lstm.sampling(FLAGS.temperature, FLAGS.noise)
    seeds = np.stack([source[s:s + FLAGS.seed_frames] for s in starts])
    _say(f"[1/2] seeding {cli.plural(FLAGS.num_dancers, 'dancer')} with frames "
         f"{', '.join(f'{s}..{s + FLAGS.seed_frames - 1}' for s in starts)}")
    _say(f"[2/2] rolling out {frames} frames{' to ' + FLAGS.audio if song else ''} with {models.lstm.path} "
         f"(temperature {temperature:g}, noise "
         f"{noise:g}{models.lstm.controls_text()}), decoding with {models.decoder.path}, writing "
         f"{', '.join(paths.values())}")
    chunks = generation.dance_chunks(models, seeds, frames, temperature, noise, FLAGS.random_seed,
                                     batch_size=FLAGS.batch_size, music=None if song is None else song["features"])
    generation.write_dance(FLAGS.out, chunks, fps, scale=FLAGS.scale, frames=frames,
                           audio=None if song is None else (song["waveform"], music.SAMPLE_RATE))
    print(json.dumps(dict(paths, frames=frames, dancers=FLAGS.num_dancers, fps=fps, seed_indices=starts)))
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
