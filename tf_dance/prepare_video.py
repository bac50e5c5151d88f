r"""Turns real dance footage into a dataset: `frames` uint8 [N, H, W, C] and `fps` in an .npz.

    python -m tf_dance.prepare_video --video=dance.mp4 --out=runs/dance.npz \
        [--fps=10] [--width=96 --height=54] [--channels=1] [--fit=stretch|crop|pad] \
        [--crop=X,Y,W,H] [--threshold=128|auto] [--invert] [--start=S --end=S] [--max_frames=N]

The paper's data were 96x54 grayscale silhouettes of one dancer (18,000 frames from 30
minutes, i.e. 10 fps). ffmpeg does all resampling in one pass (see `video.read_video`).
"""

import math
import os
import time

import numpy as np
from absl import app, flags

from tf_dance import cli, data, video

FLAGS = flags.FLAGS
flags.DEFINE_string("video", None, "Input video file (anything ffmpeg reads).")
flags.DEFINE_string("out", None, "Output dataset (.npz).")
flags.DEFINE_float("fps", None, "Resample to this frame rate; default: the source's.")
flags.DEFINE_integer("width", data.WIDTH, "Output frame width.", lower_bound=8, upper_bound=8192)
flags.DEFINE_integer("height", data.HEIGHT, "Output frame height.", lower_bound=8,
                     upper_bound=8192)
flags.DEFINE_enum("channels", "1", ["1", "3"], "1: grayscale (the paper); 3: RGB.")
flags.DEFINE_enum("fit", "stretch", list(video.FITS),
                  "Other aspect ratios: stretch to the size, crop the overflow (centred), or pad "
                  "with black bars.")
flags.DEFINE_string("crop", None, "X,Y,W,H box in source pixels to keep before scaling (e.g. the "
                    "stage area without logos).")
flags.DEFINE_string("threshold", None, "Binarise silhouettes: gray level 1..255 at or above "
                    "which a pixel is white, or 'auto' (Otsu).")
flags.DEFINE_boolean("invert", False, "Dark dancer on a light ground → white on black.")
flags.DEFINE_float("start", 0.0, "Start time in seconds.", lower_bound=0.0)
flags.DEFINE_float("end", None, "End time in seconds; default: the end of the video.")
flags.DEFINE_integer("max_frames", None, "Keep at most this many frames.", lower_bound=1)
flags.DEFINE_boolean("progress", True, "Show a progress bar.")


def _valid(check):
    def validator(value):
        try:
            check(value)
            return True
        except cli.UserError as e:
            raise flags.ValidationError(str(e)) from None
    return validator


flags.register_validator("fps", lambda v: v is None or (math.isfinite(v) and v > 0),
                         "--fps must be positive")
flags.register_validator("out", lambda v: v is None or v.endswith(".npz"),
                         "--out must end in .npz")
flags.register_validator("crop", _valid(video.parse_crop))
flags.register_validator("threshold", _valid(video.parse_threshold))
flags.register_multi_flags_validator(
    ["start", "end"], lambda f: f["end"] is None or f["end"] > f["start"],
    "--end must be after --start")


@cli.main
def main(argv):
    if not FLAGS.video:
        raise cli.UserError("--video is required")
    if not FLAGS.out:
        raise cli.UserError("--out is required (an .npz path)")
    video.probe(FLAGS.video)  # fail fast on a bad file, before keras loads for the bar
    if FLAGS.progress:
        video.progress_bar(None)  # keras loads before the clock starts
    t0 = time.perf_counter()
    frames, fps = video.read_video(
        FLAGS.video, fps=FLAGS.fps, width=FLAGS.width, height=FLAGS.height,
        channels=int(FLAGS.channels), fit=FLAGS.fit, crop=FLAGS.crop, start=FLAGS.start,
        end=FLAGS.end, max_frames=FLAGS.max_frames, progress=FLAGS.progress, invert=FLAGS.invert,
        threshold=FLAGS.threshold)
    seconds = time.perf_counter() - t0
    try:
        data.save_dataset(FLAGS.out, frames, fps, source=np.array(os.path.basename(FLAGS.video)))
    except OSError as e:
        raise cli.UserError(f"cannot write {FLAGS.out}: {e.strerror or e}") from None
    print(f"wrote {FLAGS.out}: {len(frames)} frames {FLAGS.width}x{FLAGS.height}x{FLAGS.channels} "
          f"at {fps:g} fps ({len(frames) / seconds:.0f} frames/s)")
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
