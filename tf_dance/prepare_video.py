r"""Turns real dance footage into a dataset: `frames` uint8 [N, H, W, C] and `fps` in an .npz.

    python -m tf_dance.prepare_video --video=dance.mp4 --out=runs/dance.npz \
        [--fps=10] [--width=96 --height=54] [--channels=1] [--fit=stretch|crop|pad] \
        [--crop=X,Y,W,H] [--threshold=128|auto] [--invert] [--start=S --end=S] [--max_frames=N]
    python -m tf_dance.prepare_video --video=a.mp4 --video=b.mov --out=runs/clips.npz
    python -m tf_dance.prepare_video --video=footage/ --out=runs/clips.npz   # or 'footage/*.mp4'

The paper's data were 96x54 grayscale silhouettes of one dancer (18,000 frames from 30
minutes, i.e. 10 fps). ffmpeg does all resampling in one pass (see `video.read_video`).
Several videos become one dataset whose `clips` says which video each frame came from, every
clip resampled to one frame rate, so that later steps never run across a cut. A soundtrack is
kept as per-frame music features (`music`, `music_names`; see `tf_dance.music`), each clip's
from its own audio over the same frames.
"""

import os
import sys
import time

import numpy as np
from absl import app, flags

from tf_dance import cli, data, music, video

FLAGS = flags.FLAGS


def _valid(check):
    def validator(value):
        try:
            check(value)
            return True
        except cli.UserError as e:
            raise flags.ValidationError(str(e)) from None
    return validator


def define_flags(fv=FLAGS):
    """Defined only when run as a script, so importing this module adds no flags."""
    d = dict(flag_values=fv)
    flags.DEFINE_multi_string("video", None, "Input video (anything ffmpeg reads). Repeat it, or give "
                              "a comma list, a directory (its video files, by name) or a quoted glob, "
                              "for several clips in one dataset.", **d)
    flags.DEFINE_string("out", None, "Output dataset (.npz).", **d)
    flags.DEFINE_float("fps", None, "Resample to this frame rate; default: the (first) video's.", **d)
    flags.DEFINE_integer("width", data.WIDTH, "Output frame width.", lower_bound=8, upper_bound=8192,
                         **d)
    flags.DEFINE_integer("height", data.HEIGHT, "Output frame height.", lower_bound=8,
                         upper_bound=8192, **d)
    flags.DEFINE_enum("channels", "1", ["1", "3"], "1: grayscale (the paper); 3: RGB.", **d)
    flags.DEFINE_enum("fit", "stretch", list(video.FITS),
                      "Other aspect ratios: stretch to the size, crop the overflow (centred), or pad "
                      "with black bars.", **d)
    flags.DEFINE_string("crop", None, "X,Y,W,H box in source pixels to keep before scaling (e.g. "
                        "the stage area without logos).", **d)
    flags.DEFINE_string("threshold", None, "Binarise silhouettes: gray level 1..255 at or above "
                        "which a pixel is white, or 'auto' (Otsu, per clip).", **d)
    flags.DEFINE_boolean("invert", False, "Dark dancer on a light ground → white on black.", **d)
    flags.DEFINE_float("start", 0.0, "Start time in seconds (of every clip).", lower_bound=0.0, **d)
    flags.DEFINE_float("end", None, "End time in seconds (of every clip); default: its end.", **d)
    flags.DEFINE_integer("max_frames", None, "Keep at most this many frames (of every clip).",
                         lower_bound=1, **d)
    flags.DEFINE_boolean("music", True, "Keep each clip's soundtrack as per-frame music features "
                         "(onset, beat, tempo, spectral bands) beside the frames; --nomusic drops it.",
                         **d)
    flags.DEFINE_boolean("progress", True, "Show a progress bar.", **d)

    flags.register_validator("fps", lambda v: v is None or data.MIN_FPS <= v <= data.MAX_FPS,
                             f"--fps must be in {data.MIN_FPS:g}..{data.MAX_FPS:g}", flag_values=fv)
    flags.register_validator("out", lambda v: v is None or v.endswith(".npz"),
                             "--out must end in .npz", flag_values=fv)
    flags.register_validator("crop", _valid(video.parse_crop), flag_values=fv)
    flags.register_validator("threshold", _valid(video.parse_threshold), flag_values=fv)
    flags.register_multi_flags_validator(
        ["start", "end"], lambda f: f["end"] is None or f["end"] > f["start"],
        "--end must be after --start", flag_values=fv)


@cli.main
def main(argv):
    if not FLAGS.video:
        raise cli.UserError("--video is required")
    if not FLAGS.out:
        raise cli.UserError("--out is required (an .npz path)")
    paths = video.find_videos(FLAGS.video)
    for path in paths:
        video.probe(path)  # fail fast on a bad file, before keras loads for the bar
    if FLAGS.progress:
        video.progress_bar(None)  # keras loads before the clock starts
    options = dict(width=FLAGS.width, height=FLAGS.height, channels=int(FLAGS.channels),
                   fit=FLAGS.fit, crop=FLAGS.crop, start=FLAGS.start, end=FLAGS.end,
                   max_frames=FLAGS.max_frames, progress=FLAGS.progress, invert=FLAGS.invert,
                   threshold=FLAGS.threshold)
    t0 = time.perf_counter()
    if len(paths) == 1:
        frames, fps = video.read_video(paths[0], fps=FLAGS.fps, **options)
        extras = dict(source=np.array(os.path.basename(paths[0])))
    else:
        def report(k, path, clip):
            print(f"clip {k + 1}/{len(paths)} {path}: {len(clip)} frames", flush=True)
        frames, clips, fps = video.read_videos(paths, fps=FLAGS.fps, report=report, **options)
        extras = dict(clips=clips, clip_names=np.array([os.path.basename(p) for p in paths]))
    if FLAGS.music:
        found, silent = music.soundtracks(paths, extras.get("clips", np.zeros(len(frames), np.int32)),
                                          fps, FLAGS.start)
        extras.update(found)
        if silent:
            print(f"note: no audio track in {', '.join(silent)}: " + (
                "their music features are those of silence" if found else
                "the dataset has no music features"), file=sys.stderr)
    seconds = time.perf_counter() - t0
    try:
        data.save_dataset(FLAGS.out, frames, fps, **extras)
    except OSError as e:
        raise cli.UserError(f"cannot write {FLAGS.out}: {e.strerror or e}") from None
    what = (f" in {len(paths)} clips" if len(paths) > 1 else "") + (" with music" if "music" in extras else "")
    print(f"wrote {FLAGS.out}: {len(frames)} frames {FLAGS.width}x{FLAGS.height}x{FLAGS.channels} "
          f"at {fps:g} fps{what} ({len(frames) / seconds:.0f} frames/s)")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
