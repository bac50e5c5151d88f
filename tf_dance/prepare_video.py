r"""Turns real dance footage into a dataset: `frames` uint8 [N, H, W, C] and `fps` in an .npz.

    python -m tf_dance.prepare_video --video=dance.mp4 --out=runs/dance.npz \
        [--fps=10] [--width=96 --height=54] [--channels=1] [--fit=stretch|crop|pad] \
        [--crop=X,Y,W,H] [--threshold=128|auto] [--invert] [--start=S --end=S] [--max_frames=N] \
        [--preview=runs/dance_preview.png]
    python -m tf_dance.prepare_video --video=a.mp4 --video=b.mov --out=runs/clips.npz
    python -m tf_dance.prepare_video --video=footage/ --out=runs/clips.npz   # or 'footage/*.mp4'

The paper's data were 96x54 grayscale silhouettes of one dancer (18,000 frames from 30
minutes, i.e. 10 fps). ffmpeg does all resampling in one pass (see `video.read_video`).
Several videos become one dataset whose `clips` says which video each frame came from, every
clip resampled to one frame rate, so that later steps never run across a cut. A soundtrack is
kept as per-frame music features (`music`, `music_names`; see `tf_dance.music`), each clip's
from its own audio over the same frames.

The share of foreground (white) pixels and of frames without a dancer are printed and stored in
the dataset (`foreground_share`, `empty_share`); frames that are mostly foreground (a light ground:
`--invert` needed) or mostly empty are refused unless `--nocheck_footage`.
"""

import os
import sys
import time

import numpy as np
from absl import app, flags

from tf_dance import cli, data, music, video

FLAGS = flags.FLAGS


def define_flags(fv=FLAGS):
    """Defined only when run as a script, so importing this module adds no flags."""
    d = dict(flag_values=fv)
    flags.DEFINE_multi_string("video", None, "Input video (anything ffmpeg reads). Repeat it, or give "
                              "a comma list, a directory (its video files, by name) or a quoted glob, "
                              "for several clips in one dataset.", **d)
    flags.DEFINE_string("out", None, "Output dataset (.npz).", **d)
    flags.DEFINE_string("preview", None, "Also write a contact sheet (.png) of the prepared frames, to check "
                        "them at a glance: a white dancer on black.", **d)
    flags.DEFINE_boolean("music", True, "Keep each clip's soundtrack as per-frame music features "
                         "(onset, beat, tempo, spectral bands) beside the frames; --nomusic drops it.", **d)
    flags.DEFINE_boolean("progress", True, "Show a progress bar.", **d)
    video.define_footage_flags(fv)
    flags.register_validator("out", lambda v: v is None or v.endswith(".npz"),
                             "--out must end in .npz", flag_values=fv)
    flags.register_validator("preview", lambda v: v is None or v.endswith(".png"),
                             "--preview must end in .png", flag_values=fv)


PREVIEW_TILES = 32


def write_preview(path, frames, fps, clips=None, title=""):
    """A contact sheet of `PREVIEW_TILES` frames spread evenly over the dataset, each labelled with
    its clip and time, under `title`."""
    pick = np.linspace(0, len(frames) - 1, min(PREVIEW_TILES, len(frames))).astype(int)
    if clips is None:
        labels = [f"{i / fps:.1f}s" for i in pick]
    else:
        labels = [f"clip {clips[i] + 1} {(i - np.searchsorted(clips, clips[i])) / fps:.1f}s" for i in pick]
    video.contact_sheet(path, frames[pick], every=1, columns=8, scale=2, labels=labels, title=title)
    return path


@cli.main
def main(argv):
    if not FLAGS.video:
        raise cli.UserError("--video is required")
    if not FLAGS.out:
        raise cli.UserError("--out is required (an .npz path)")
    if FLAGS.preview:
        cli.check_output(FLAGS.preview, "--preview")
    paths = video.find_videos(FLAGS.video)
    for path in paths:
        video.probe(path)  # fail fast on a bad file
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
    foreground, empty = video.footage_measures(frames)
    print(f"foreground (white) pixels: {100 * foreground:.1f}%; frames without a dancer: {100 * empty:.1f}%",
          flush=True)
    if FLAGS.check_footage:
        video.check_footage(foreground, empty, FLAGS.invert)
    extras.update(foreground_share=np.float32(foreground), empty_share=np.float32(empty))
    try:
        if FLAGS.preview:
            write_preview(FLAGS.preview, frames, fps, extras.get("clips"),
                          f"{os.path.basename(FLAGS.out)}: {cli.plural(len(frames), 'frame')}, "
                          f"{cli.plural(len(paths), 'clip')}, {100 * foreground:.0f}% foreground")
        data.save_dataset(FLAGS.out, frames, fps, **extras)
    except OSError as e:
        raise cli.UserError(f"cannot write {FLAGS.out}: {e.strerror or e}") from None
    what = " with music" if "music" in extras else ""
    print(f"wrote {FLAGS.out}: {cli.plural(len(frames), 'frame')} {FLAGS.width}x{FLAGS.height}x{FLAGS.channels} "
          f"({len(frames) / fps:.1f} s of video at {fps:g} fps) in {cli.plural(len(paths), 'clip')}{what}; "
          f"decoded in {seconds:.1f} s ({len(frames) / seconds:.0f} frames/s)")
    if FLAGS.preview:
        print(f"preview: {FLAGS.preview}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
