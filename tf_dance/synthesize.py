r"""Writes the embedded datasets: the procedural dancer and the paper's Perlin sanity set.

    python -m tf_dance.synthesize --kind=dancer --frames=18000 --seed=0 --out=runs/dancer.npz \
        [--video=runs/dancer.mp4]
    python -m tf_dance.synthesize --kind=dancer --clips=8 --out=runs/footage.npz  # 4,000 frames
    python -m tf_dance.synthesize --kind=perlin --frames=18000 --out=runs/perlin.npz
    python -m tf_dance.synthesize --music --out=runs/music.npz --video=runs/music.mp4

`--clips=K` (K > 1) is the footage-like dancer: K cuts between dancers of different builds who
travel across the whole frame, turn towards profile and change apparent size; the dataset then
holds `clips` and `clip_names`. `--music` makes the dancer dance to a procedural song (each
clip its own): the dataset gains the song's per-frame `music` features and `music_names`, and
the .mp4 preview its sound. The library code is `tf_dance.dancer`, `tf_dance.soundtrack` and
`tf_dance.perlin`.
"""

import functools
import os
import tempfile
import time

import numpy as np
from absl import app, flags

from tf_dance import cli, dancer, data, music, perlin, video

FLAGS = flags.FLAGS
MAX_FPS = 1000.0
ONE_DANCE, PER_CLIP = 18000, 500


def define_flags(fv=FLAGS):
    """Defined only when run as a script, so importing this module adds no flags."""
    d = dict(flag_values=fv)
    flags.DEFINE_enum("kind", "dancer", ["dancer", "perlin"],
                      "dancer: procedural silhouette video; perlin: the paper's 10-d noise set.", **d)
    flags.DEFINE_integer("frames", None, "Number of frames (time steps) to generate, in all clips; "
                         f"default: {ONE_DANCE:,} (the paper's dataset size), or {PER_CLIP} per clip "
                         "with --clips (a few thousand, like a user's footage).", lower_bound=1,
                         upper_bound=10_000_000, **d)
    flags.DEFINE_integer("clips", 1, "dancer: 1 is one continuous dance; more is footage-like: that "
                         "many clips with cuts, each a dancer of its own build who travels across the "
                         "frame, turns towards profile and changes apparent size.", lower_bound=1,
                         upper_bound=1000, **d)
    flags.DEFINE_boolean("music", False, "dancer: dance to a procedural soundtrack (a 4/4 beat "
                         "whose tempo changes from section to section, accents, drums and bass), "
                         "moves and accents following it; the dataset gains per-frame music features "
                         "(`music`, `music_names`) and an .mp4 preview the sound.", **d)
    flags.DEFINE_integer("seed", 0, "Random seed: the same flags and seed give the same file.",
                         lower_bound=0, **d)
    flags.DEFINE_string("out", None, "Output .npz path.", **d)
    flags.DEFINE_string("video", None, "Optional .mp4 (or .gif) preview of the generated data; "
                        "written together with --out (both or neither).", **d)
    flags.DEFINE_integer("video_scale", 1, "Integer upscaling of the preview video.", lower_bound=1,
                         upper_bound=20, **d)
    flags.DEFINE_float("fps", 24.0, "Frames per second (the dancer's tempo is in real seconds).",
                       lower_bound=1.0, upper_bound=MAX_FPS, **d)
    flags.DEFINE_integer("width", data.WIDTH, "Frame width in pixels.", lower_bound=8,
                         upper_bound=4096, **d)
    flags.DEFINE_integer("height", data.HEIGHT, "Frame height in pixels.", lower_bound=8,
                         upper_bound=4096, **d)
    flags.DEFINE_enum("channels", "1", ["1", "3"], "1: grayscale frames (the paper); 3: RGB.", **d)
    flags.DEFINE_integer("margin", 2, "Pixels kept empty at every border so crops never cut limbs.",
                         lower_bound=0, **d)
    flags.DEFINE_integer("dim", 10, "perlin: dimensions of the vectors.", lower_bound=1,
                         upper_bound=4096, **d)
    flags.DEFINE_float("rate", 0.5, "perlin: noise lattice cells travelled per second.",
                       lower_bound=1e-6, upper_bound=1000.0, **d)
    flags.DEFINE_integer("octaves", 2, "perlin: octaves of noise summed.", lower_bound=1,
                         upper_bound=8, **d)
    flags.DEFINE_boolean("progress", True, "Show a progress bar.", **d)

    flags.register_validator("out", lambda v: v is None or v.endswith(".npz"),
                             "--out must end in .npz", flag_values=fv)
    flags.register_validator("video", lambda v: v is None or v.endswith((".mp4", ".gif")),
                             "--video must end in .mp4 or .gif", flag_values=fv)
    flags.register_multi_flags_validator(
        ["margin", "width", "height"], lambda f: 4 * f["margin"] < min(f["width"], f["height"]),
        "--margin must be less than a quarter of --width and --height", flag_values=fv)
    flags.register_multi_flags_validator(
        ["kind", "clips"], lambda f: f["kind"] == "dancer" or f["clips"] == 1,
        "--clips applies to --kind=dancer only", flag_values=fv)
    flags.register_multi_flags_validator(
        ["kind", "music"], lambda f: f["kind"] == "dancer" or not f["music"],
        "--music applies to --kind=dancer only", flag_values=fv)
    flags.register_multi_flags_validator(
        ["video", "music"], lambda f: not (f["music"] and f["video"] and f["video"].endswith(".gif")),
        "--music needs an .mp4 --video (a GIF has no sound)", flag_values=fv)


def _write_preview(path, frames, fps, scale, sound=None):
    if path.endswith(".gif"):
        video.write_gif(path, frames, fps, scale=scale)
    elif sound is None:
        video.write_video(path, frames, fps, scale=scale)
    else:
        with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(path))) as tmp:
            silent = video.write_video(os.path.join(tmp, "silent.mp4"), frames, fps, scale=scale)
            music.mux(silent, *sound, out=path)


def _publish(out, write, preview=None):
    """Writes the dataset (`write(tmp_path)`) and its preview (`preview()`) as a pair.

    The dataset is renamed into place only after the preview is finished, and a preview whose
    dataset could not be placed is removed, so a failure leaves neither.
    """
    for path in filter(None, (out, FLAGS.video)):
        if os.path.isdir(path):
            raise cli.UserError(f"cannot write {path}: it is a directory")
    wrote_preview = False
    try:
        with cli.atomic_output(out) as tmp:
            write(tmp)
            if preview is not None:
                preview()
                wrote_preview = True
    except BaseException:
        if wrote_preview and os.path.isfile(FLAGS.video):
            os.remove(FLAGS.video)
        raise


@cli.main
def main(argv):
    if not FLAGS.out:
        raise cli.UserError("--out is required (an .npz path)")
    frames = FLAGS.frames or (ONE_DANCE if FLAGS.clips == 1 else PER_CLIP * FLAGS.clips)
    t0 = time.perf_counter()
    preview = None
    try:
        if FLAGS.kind == "perlin":
            vectors = perlin.perlin_vectors(frames, FLAGS.seed, FLAGS.dim, FLAGS.fps,
                                            FLAGS.rate, FLAGS.octaves)
            if FLAGS.video:
                preview = functools.partial(
                    _write_preview, FLAGS.video,
                    perlin.perlin_strips(vectors, FLAGS.height, FLAGS.width), FLAGS.fps,
                    FLAGS.video_scale)
            _publish(FLAGS.out, lambda tmp: np.savez(tmp, vectors=vectors, fps=np.float32(FLAGS.fps)),
                     preview)
            what = f"{frames} x {FLAGS.dim} Perlin vectors"
        else:
            args = (FLAGS.seed, FLAGS.fps, FLAGS.height, FLAGS.width, int(FLAGS.channels),
                    FLAGS.margin)
            if FLAGS.clips == 1:
                result = dancer.dancer(frames, *args, progress=FLAGS.progress, music=FLAGS.music)
                extras = {}
            else:
                result = dancer.footage(frames, FLAGS.clips, *args, progress=FLAGS.progress,
                                        music=FLAGS.music)
                extras = dict(clips=result["clips"],
                              clip_names=np.array([f"clip{k}" for k in range(FLAGS.clips)]))
            sound = None
            if FLAGS.music:
                extras.update(music=result["music"], music_names=result["music_names"])
                sound = (result["audio"], result["sample_rate"])
            if FLAGS.video:
                preview = functools.partial(_write_preview, FLAGS.video, result["frames"],
                                            FLAGS.fps, FLAGS.video_scale, sound)
            _publish(FLAGS.out, lambda tmp: data.save_dataset(
                tmp, result["frames"], FLAGS.fps, poses=result["poses"], moves=result["moves"],
                pose_names=np.array(dancer.POSE_NAMES), move_names=np.array(dancer.MOVES),
                seed=np.int64(FLAGS.seed), **extras), preview)
            what = (f"{frames} frames {FLAGS.width}x{FLAGS.height}"
                    f"{f' in {FLAGS.clips} clips' if FLAGS.clips > 1 else ''}, "
                    f"{len(np.unique(result['moves']))} distinct moves"
                    f"{', with music' if FLAGS.music else ''}")
    except OSError as e:
        raise cli.UserError(f"cannot write {e.filename2 or e.filename or FLAGS.out}: "
                            f"{e.strerror or e}") from None
    print(f"wrote {FLAGS.out}: {what} ({frames / FLAGS.fps:.1f} s at {FLAGS.fps:g} fps), made in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
