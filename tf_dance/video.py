"""Video in and out: ffmpeg-decoded frames, mp4/GIF writers and contact sheets.

Reading runs moviepy's ffmpeg binary with the whole resampling chain (crop box, frame rate,
gray or RGB, invert, scale/crop/pad to the target size) as one `-vf` filter and takes raw
frames from its pipe: ffmpeg scales far faster than numpy could, and only 96x54 pixels per
frame ever reach Python. Writing pipes raw frames into the same binary (libx264, yuv420p).
Every writer is atomic (`cli.atomic_output`) and every bad input raises `cli.UserError`.
"""

import glob
import contextlib
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from absl import flags
from PIL import Image, ImageDraw, ImageFont

from tf_dance import cli, data

FITS = ("stretch", "crop", "pad")
# What a directory of clips is searched for: common video containers (anything else there is left alone).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv",
                    ".ogv", ".3gp", ".ts", ".mts", ".gif")
_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")
_CHUNK = 256
_READ_BYTES = 64 << 20  # at most this much of ffmpeg's output is read at once, whatever the frame size


def _ffmpeg():
    from moviepy.config import FFMPEG_BINARY
    return FFMPEG_BINARY


def _last_line(text, first=False):
    """One line of ffmpeg's complaint, without its `[component @ 0x...]` prefixes."""
    lines = [_PREFIX.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    return (lines[0] if first else lines[-1]) if lines else "no message"


# ---------------------------------------------------------------------------------------------
# Reading


def probe(path):
    """`dict(width, height, fps, duration)` of the first video stream; `UserError` if none."""
    cli.require_file(path, "video")
    from moviepy.video.io.ffmpeg_reader import ffmpeg_parse_infos
    try:
        infos = ffmpeg_parse_infos(path)
    except (OSError, IndexError, KeyError, ValueError, AttributeError, TypeError) as e:
        raise cli.UserError(f"{path} is not a readable video ({_last_line(str(e))})") from None
    if not infos.get("video_found") or not infos.get("video_size"):
        raise cli.UserError(f"{path} has no video stream")
    width, height = infos["video_size"]
    fps = infos.get("video_fps")
    duration = infos.get("video_duration") or infos.get("duration")
    return dict(width=int(width), height=int(height),
                fps=float(fps) if fps and math.isfinite(fps) and fps > 0 else None,
                duration=float(duration) if duration else None)


def parse_crop(crop):
    """`"x,y,w,h"` or a 4-sequence of source pixels → ints; `UserError` on anything else."""
    if crop is None or isinstance(crop, str) and not crop.strip():
        return None
    parts = crop.split(",") if isinstance(crop, str) else list(crop)
    try:
        box = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        box = ()
    if len(box) != 4 or box[0] < 0 or box[1] < 0 or box[2] < 1 or box[3] < 1:
        raise cli.UserError(f"crop must be X,Y,W,H in source pixels (X,Y >= 0, W,H >= 1), "
                            f"got {crop!r}")
    return box


def parse_threshold(threshold):
    """None, an int 1..255, or "auto" (Otsu's threshold over the clip)."""
    if threshold is None or threshold == "":
        return None
    if isinstance(threshold, str) and threshold.strip().lower() == "auto":
        return "auto"
    try:
        value = int(threshold)
    except (TypeError, ValueError):
        value = -1
    if not 1 <= value <= 255:
        raise cli.UserError(f"threshold must be a gray level 1..255 or 'auto', got {threshold!r}")
    return value


def otsu_threshold(frames):
    """The gray level that best splits the histogram into two classes (Otsu's method)."""
    hist = np.bincount(frames.reshape(-1), minlength=256).astype(np.float64)
    levels = np.arange(256)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * levels)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = (w0 * w1 * (mean0 - mean1) ** 2)[:-1]
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return int((best[0] + best[-1]) // 2) + 1  # middle of an empty gap, not its dark edge


def binarise(frames, threshold):
    """Pixels at or above `threshold` → 255, others → 0 (on luma for RGB frames)."""
    if threshold == "auto":
        threshold = otsu_threshold(frames if frames.shape[-1] == 1 else _luma(frames))
    luma = frames if frames.shape[-1] == 1 else _luma(frames)[..., None]
    return np.broadcast_to(np.where(luma >= threshold, 255, 0).astype(np.uint8),
                           frames.shape).copy()


def _luma(frames):
    return (frames.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])).astype(np.uint8)


def _filters(src, fps, width, height, channels, fit, crop, invert):
    chain = []
    if crop:
        x, y, w, h = crop
        if x + w > src["width"] or y + h > src["height"]:
            raise cli.UserError(f"crop box {x},{y},{w},{h} lies outside the "
                                f"{src['width']}x{src['height']} video")
        chain.append(f"crop={w}:{h}:{x}:{y}")
    chain.append(f"fps={fps!r}")
    chain.append("format=gray" if channels == 1 else "format=rgb24")
    if invert:
        chain.append("negate")
    if fit == "stretch":
        chain.append(f"scale={width}:{height}:flags=area")
    elif fit == "crop":
        chain.append(f"scale={width}:{height}:force_original_aspect_ratio=increase:flags=area")
        chain.append(f"crop={width}:{height}")
    else:
        chain.append(f"scale={width}:{height}:force_original_aspect_ratio=decrease:flags=area")
        chain.append(f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black")
    return ",".join(chain)


def _check_args(fps, width, height, channels, fit, start, end, max_frames):
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise cli.UserError(f"fps must be positive, got {fps}")
    if not (8 <= width <= 8192 and 8 <= height <= 8192):
        raise cli.UserError(f"width and height must be 8..8192 pixels, got {width}x{height}")
    if channels not in (1, 3):
        raise cli.UserError(f"channels must be 1 or 3, got {channels}")
    if fit not in FITS:
        raise cli.UserError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    if not (math.isfinite(start) and start >= 0):
        raise cli.UserError(f"start must be >= 0 seconds, got {start}")
    if end is not None and not (math.isfinite(end) and end > start):
        raise cli.UserError(f"end ({end} s) must be after start ({start} s)")
    if max_frames is not None and max_frames < 1:
        raise cli.UserError(f"max_frames must be >= 1, got {max_frames}")


# The share of a frame's pixels above which a dataset is "mostly foreground" (a dancer rarely covers
# half the picture: the ground is white, the footage needs --invert) and the share of frames without a
# dancer above which it is "mostly empty" (a --threshold too high, or a dark dancer on a dark ground).
MAX_FOREGROUND = 0.5
MAX_EMPTY = 0.5
EMPTY_FRAME = 0.002  # a frame with fewer foreground pixels than this share shows no dancer


def footage_measures(frames):
    """(foreground share, empty-frame share) of uint8 frames: pixels at or above gray level 128
    (luma for RGB), the level every later step reads as the dancer, and frames with (almost) none."""
    foreground = np.empty(len(frames), np.float64)
    for i in range(0, len(frames), 1024):
        chunk = frames[i:i + 1024]
        luma = chunk[..., 0] if chunk.shape[-1] == 1 else _luma(chunk)
        foreground[i:i + len(chunk)] = (luma >= 128).mean(axis=(1, 2))
    return float(foreground.mean()), float((foreground < EMPTY_FRAME).mean())


def check_footage(foreground, empty, inverted=False):
    """`cli.UserError` naming the likely fix for footage that cannot be a light dancer on a dark ground."""
    keep = "or --nocheck_footage to keep these frames"
    if foreground > MAX_FOREGROUND:
        fix = ("drop --invert: the footage already is a light dancer on a dark ground" if inverted else
               "pass --invert for a dark dancer on a light ground")
        raise cli.UserError(f"{100 * foreground:.1f}% of the pixels are foreground (white), so the ground came out "
                            f"white: {fix}, {keep}")
    if empty > MAX_EMPTY:
        raise cli.UserError(f"{100 * empty:.1f}% of the frames show no dancer (no pixel at gray level 128 or above): "
                            "lower --threshold (or try --threshold=auto)"
                            f"{'' if inverted else ', pass --invert for a dark dancer on a light ground'}, {keep}")


def define_footage_flags(flag_values):
    """How footage becomes frames: the flags of `prepare_video` that `demo --video` passes on too."""
    d = dict(flag_values=flag_values)
    flags.DEFINE_float("fps", None, "Resample to this frame rate; default: the (first) video's.", **d)
    flags.DEFINE_integer("width", data.WIDTH, "Output frame width.", lower_bound=8, upper_bound=8192, **d)
    flags.DEFINE_integer("height", data.HEIGHT, "Output frame height.", lower_bound=8, upper_bound=8192, **d)
    flags.DEFINE_enum("channels", "1", ["1", "3"], "1: grayscale (the paper); 3: RGB.", **d)
    flags.DEFINE_enum("fit", "stretch", list(FITS), "Other aspect ratios: stretch to the size, crop the overflow "
                      "(centred), or pad with black bars.", **d)
    flags.DEFINE_string("crop", None, "X,Y,W,H box in source pixels to keep before scaling (e.g. the stage area "
                        "without logos).", **d)
    flags.DEFINE_string("threshold", None, "Binarise silhouettes: gray level 1..255 at or above which a pixel is "
                        "white, or 'auto' (Otsu, per clip).", **d)
    flags.DEFINE_boolean("invert", False, "Dark dancer on a light ground -> white on black.", **d)
    flags.DEFINE_float("start", 0.0, "Start time in seconds (of every clip).", lower_bound=0.0, **d)
    flags.DEFINE_float("end", None, "End time in seconds (of every clip); default: its end.", **d)
    flags.DEFINE_integer("max_frames", None, "Keep at most this many frames (of every clip).", lower_bound=1, **d)
    flags.DEFINE_boolean("check_footage", True, f"Refuse frames that are mostly foreground (over "
                         f"{MAX_FOREGROUND:.0%} white pixels: a light ground, --invert needed) or mostly empty (over "
                         f"{MAX_EMPTY:.0%} of the frames without a dancer).", **d)
    flags.register_validator("fps", lambda v: v is None or data.MIN_FPS <= v <= data.MAX_FPS,
                             f"--fps must be in {data.MIN_FPS:g}..{data.MAX_FPS:g}", **d)
    flags.register_validator("crop", _valid(parse_crop), **d)
    flags.register_validator("threshold", _valid(parse_threshold), **d)
    flags.register_multi_flags_validator(["start", "end"], lambda f: f["end"] is None or f["end"] > f["start"],
                                         "--end must be after --start", **d)


FOOTAGE_FLAGS = ("fps", "width", "height", "channels", "fit", "crop", "threshold", "invert", "start", "end",
                 "max_frames", "check_footage")


def _valid(check):
    def validator(value):
        try:
            check(value)
            return True
        except cli.UserError as e:
            raise flags.ValidationError(str(e)) from None
    return validator


def find_videos(specs):
    """The video files named by `specs`, in order: paths, comma lists, directories or globs.

    A directory gives its files with a video extension, sorted by name; a glob gives its
    matches, sorted. Raises `cli.UserError` for nothing given, a glob that matches nothing, a
    directory without videos, a missing path or the same file named twice.
    """
    specs = [specs] if isinstance(specs, str) else list(specs or [])
    found = []
    for spec in specs:
        parts = [spec] if os.path.exists(spec) else [p.strip() for p in spec.split(",")]
        for part in filter(None, parts):
            if os.path.isdir(part):
                names = sorted(n for n in os.listdir(part) if not n.startswith(".")
                               and n.lower().endswith(VIDEO_EXTENSIONS)
                               and os.path.isfile(os.path.join(part, n)))
                if not names:
                    raise cli.UserError(f"no video files ({', '.join(VIDEO_EXTENSIONS[:4])}, ...) "
                                        f"in the directory {part}")
                found += [os.path.join(part, n) for n in names]
            elif glob.has_magic(part) and not os.path.exists(part):
                matches = sorted(m for m in glob.glob(part) if os.path.isfile(m))
                if not matches:
                    raise cli.UserError(f"no file matches {part}")
                found += matches
            else:
                found.append(cli.require_file(part, "video"))
    if not found:
        raise cli.UserError("no video given")
    seen = {}
    for path in found:
        key = os.path.realpath(path)
        if key in seen:
            raise cli.UserError(f"{path} is given twice (also as {seen[key]})")
        seen[key] = path
    return found


def read_video(path, fps=None, width=data.WIDTH, height=data.HEIGHT, channels=1, fit="stretch",
               crop=None, start=0.0, end=None, max_frames=None, progress=True, invert=False,
               threshold=None):
    """Decodes `path` into `(frames uint8 [N, height, width, channels], fps)`.

    fps: resample to this rate (default: the source's). fit: how another aspect ratio reaches
    width x height: `stretch`, `crop` (fill, cut the overflow centred) or `pad` (fit, black
    bars). crop: "X,Y,W,H" box in source pixels, applied first. start/end: seconds.
    invert: dark dancer on a light ground → white on black. threshold: 1..255 or "auto" →
    binary silhouettes. Raises `cli.UserError` for a missing or unreadable file or no frames.
    """
    _check_args(fps, width, height, channels, fit, start, end, max_frames)
    crop, threshold = parse_crop(crop), parse_threshold(threshold)
    src = probe(path)
    out_fps = fps or src["fps"]
    if not out_fps:
        raise cli.UserError(f"cannot tell the frame rate of {path}: pass fps explicitly")
    vf = _filters(src, out_fps, width, height, channels, fit, crop, invert)
    cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error"]
    if start:
        cmd += ["-ss", repr(float(start))]
    if end is not None:
        cmd += ["-t", repr(float(end - start))]
    cmd += ["-i", "file:" + os.path.abspath(path), "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", vf]
    if max_frames:
        cmd += ["-frames:v", str(max_frames)]
    cmd += ["-f", "rawvideo", "-pix_fmt", "gray" if channels == 1 else "rgb24", "pipe:1"]

    expected = _expected_frames(src, out_fps, start, end, max_frames)
    budget = check_memory(path, expected or 0, width, height, channels)
    bar = cli.progress(expected, unit="frame", enabled=progress)
    frame_bytes = width * height * channels
    per_read = max(1, min(_CHUNK, _READ_BYTES // frame_bytes))
    chunks, count = [], 0
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        try:
            while True:
                if budget is not None and 2 * (count + per_read) * frame_bytes > budget:  # a duration that lied
                    check_memory(path, count + per_read, width, height, channels, budget)
                buf = proc.stdout.read(per_read * frame_bytes)
                n = len(buf) // frame_bytes
                if n:
                    chunks.append(np.frombuffer(buf, np.uint8, n * frame_bytes).reshape(
                        n, height, width, channels))
                    count += n
                    bar.update(count if expected is None else min(count, expected))
                if len(buf) < per_read * frame_bytes:
                    break
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        log.seek(0)
        message = log.read().decode("utf-8", "replace")
    if count == 0:
        why = f": {_last_line(message, first=True)}" if message.strip() else ""
        raise cli.UserError(f"no frames could be decoded from {path} between {start:g} s and "
                            f"{'the end' if end is None else f'{end:g} s'}{why}")
    if rc != 0:
        raise cli.UserError(f"decoding {path} failed after {count} frames: "
                            f"{_last_line(message, first=True)}")
    if message.strip():
        print(f"warning: ffmpeg reported errors decoding {path} (first: "
              f"{_last_line(message, first=True)})", file=sys.stderr)
    if expected is None or count < expected:
        bar.update(count, finalize=True)
    frames = np.concatenate(chunks)
    if threshold is not None:
        frames = binarise(frames, threshold)
    return frames, float(out_fps)


def _expected_frames(src, fps, start, end, max_frames):
    """The frames ffmpeg will deliver, from the probed duration; None when the duration is unknown."""
    if not src["duration"]:
        return None
    stop = min(src["duration"], end) if end is not None else src["duration"]
    expected = max(1, int(round((stop - start) * fps)))
    return min(expected, max_frames) if max_frames else expected


def check_memory(what, frames, width, height, channels, available=None):
    """Refuses, before decoding, `frames` frames that would not fit in memory (twice: the decoded pieces and
    the joined array); returns the memory available (None: unknown)."""
    return data.require_memory(2 * frames * width * height * channels,
                               f"{what}: {frames} frames of {width}x{height}x{channels}",
                               "lower --fps, --width/--height or --channels, or keep fewer frames "
                               "(--start/--end/--max_frames)", available)


def read_videos(paths, fps=None, report=None, **kwargs):
    """Several videos as one clip-labelled sequence: `(frames, clips int32 [N], fps)`.

    Every clip is resampled to one frame rate: `fps`, or by default the first video's. All of
    them are probed before any is decoded, so a bad file late in the list fails at once.
    kwargs go to `read_video` and apply to every clip (`start`/`end`/`max_frames` per clip).
    report(k, path, frames): called after each clip.
    """
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise cli.UserError(f"fps must be positive, got {fps}")
    infos = [probe(p) for p in paths]
    fps = fps or infos[0]["fps"]
    if not fps:
        raise cli.UserError(f"cannot tell the frame rate of {paths[0]}: pass fps explicitly")
    total = sum(_expected_frames(info, fps, kwargs.get("start", 0.0), kwargs.get("end"), kwargs.get("max_frames"))
                or 0 for info in infos)
    check_memory(f"{len(paths)} videos", total, kwargs.get("width", data.WIDTH), kwargs.get("height", data.HEIGHT),
                 kwargs.get("channels", 1))
    chunks = []
    for k, path in enumerate(paths):
        frames, _ = read_video(path, fps=fps, **kwargs)
        chunks.append(frames)
        if report is not None:
            report(k, path, frames)
    clips = np.repeat(np.arange(len(chunks), dtype=np.int32), [len(c) for c in chunks])
    return np.concatenate(chunks), clips, float(fps)


# ---------------------------------------------------------------------------------------------
# Writing


def as_frames(frames):
    """uint8 `[N, H, W, C]` from uint8 or float-in-[0, 1] frames, with or without the C axis."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or frames.shape[0] == 0:
        raise cli.UserError(f"frames must be a non-empty [N, H, W, 1|3] array, got {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    if np.issubdtype(frames.dtype, np.floating):
        if not np.all(np.isfinite(frames)):
            raise cli.UserError("frames contain NaN or inf")
        return np.rint(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise cli.UserError(f"frames must be uint8 or float in [0, 1], got {frames.dtype}")


def _upscale(frames, scale):
    if scale == 1:
        return frames
    return np.repeat(np.repeat(frames, scale, axis=1), scale, axis=2)


def _check_scale(fps, scale):
    if not (math.isfinite(fps) and fps > 0):
        raise cli.UserError(f"fps must be positive, got {fps}")
    if int(scale) != scale or scale < 1:
        raise cli.UserError(f"scale must be a positive integer, got {scale}")


def write_video(path, frames, fps, scale=1, crf=18):
    """An H.264 mp4 (yuv420p, plays everywhere), each pixel upscaled to `scale` x `scale`.

    yuv420p needs even sides, so an odd width or height gets one black row/column added.
    """
    frames = as_frames(frames)
    with video_writer(path, frames.shape[1], frames.shape[2], fps, scale=scale, crf=crf) as write:
        write(frames)
    return path


# libx264's default "medium" spends most of a dance's writing time on these small frames, and several times
# more on a noisy picture than on a clean one. "ultrafast" takes about half the CPU time of "superfast" at the
# same CRF and keeps the frames closer to the source (12,000 silhouettes: mean error 0.15 vs. 0.24 gray levels,
# at most 20 vs. 65), in a file 25% larger (smaller on noisy pictures). Small videos are encoded on one thread:
# frame threads cost more CPU time than they save there, and the CPU is busy rolling out and decoding.
PRESET = "ultrafast"
SMALL = 640 * 360


@contextlib.contextmanager
def video_writer(path, height, width, fps, scale=1, crf=18):
    """`with video_writer(path, h, w, fps) as write: write(frames)...`: an mp4 like `write_video`'s,
    streamed, so that a video longer than memory can hold is written piece by piece.

    The frames go to ffmpeg as they are (gray or RGB, one pipe write per call); ffmpeg upscales and
    pads them and converts to yuv420p.
    """
    _check_scale(fps, scale)
    h, w = height, width
    out_h, out_w = h * scale + (h * scale) % 2, w * scale + (w * scale) % 2
    filters = []
    if scale != 1:
        filters.append(f"scale={w * scale}:{h * scale}:flags=neighbor")
    if (out_h, out_w) != (h * scale, w * scale):
        filters.append(f"pad={out_w}:{out_h}:0:0:black")
    state = dict(proc=None)
    # A text log: read back when ffmpeg fails (a full disk).
    with cli.atomic_output(path) as tmp, tempfile.TemporaryFile("w+", errors="replace") as log:

        def start(c):
            cmd = [_ffmpeg(), "-y", "-nostdin", "-loglevel", "error", "-f", "rawvideo", "-vcodec", "rawvideo",
                   "-s", f"{w}x{h}", "-pix_fmt", "gray" if c == 1 else "rgb24", "-r", f"{float(fps)!r}",
                   "-i", "-", "-an", "-vcodec", "libx264", "-preset", PRESET, "-crf", str(crf)]
            cmd += ["-threads", "1"] if out_h * out_w <= SMALL else []
            cmd += (["-vf", ",".join(filters)] if filters else []) + ["-pix_fmt", "yuv420p", tmp]
            state["proc"] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
            state["channels"] = c

        def write(frames):
            frames = as_frames(frames)
            if frames.shape[1:3] != (h, w):
                raise cli.UserError(f"frames of {frames.shape[2]}x{frames.shape[1]} for a {w}x{h} video")
            if state["proc"] is None:
                start(frames.shape[-1])
            if frames.shape[-1] != state["channels"]:
                raise cli.UserError(f"frames with {frames.shape[-1]} channels for a video of {state['channels']}")
            state["proc"].stdin.write(memoryview(np.ascontiguousarray(frames)).cast("B"))

        failed = False
        try:
            yield write
        except OSError:
            failed = True
        except BaseException:
            if state["proc"] is not None:
                state["proc"].kill()
                state["proc"].wait()
            raise
        proc = state["proc"]
        if proc is None:
            raise cli.UserError(f"no frames to write to {path}")
        try:
            proc.stdin.close()
        except OSError:
            failed = True
        proc.wait()
        if failed or proc.returncode != 0:
            log.seek(0)
            errors = [line for line in log.read().splitlines() if "rror" in line or "File too large" in line]
            why = (_last_line(errors[-1]) if errors else f"ffmpeg ended with {proc.returncode}"
                   + (" (SIGXFSZ: file size limit reached)" if proc.returncode == -25 else ""))
            raise cli.UserError(f"ffmpeg could not write {path}: {why}")
    return path


def _pil(frame):
    return Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)


def write_gif(path, frames, fps, scale=1):
    """An animated GIF that loops forever (PIL); GIF delays are whole hundredths of a second."""
    frames = as_frames(frames)
    _check_scale(fps, scale)
    images = [_pil(f) for f in _upscale(frames, scale)]
    with cli.atomic_output(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=max(20, int(round(1000.0 / fps))), disposal=1)
    return path


def _titled(sheet, title, size):
    """`sheet` below a black band holding `title` in white."""
    band = _pil(np.zeros((size + 8,) + sheet.shape[1:], np.uint8))
    ImageDraw.Draw(band).text((4, 3), title, fill=255 if sheet.shape[-1] == 1 else (255, 255, 255), font=font(size))
    return np.concatenate([np.asarray(band).reshape((size + 8,) + sheet.shape[1:]), sheet])


def font(size=12):
    """PIL's default font at `size` pixels (its fixed bitmap font where Pillow is too old to scale it)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def contact_sheet(path, frames, every=4, columns=8, scale=1, labels=None, gap=2, gap_value=64, title=None):
    """A PNG grid of every `every`-th frame, row by row (the paper's Figure 2).

    labels: one string per tile or per input frame (then subsampled like the frames), drawn
    in each tile's corner. title: a line of text above the grid. Returns the sheet as uint8
    `[H, W, C]`; `path=None` only returns it.
    """
    frames = as_frames(frames)
    if every < 1 or columns < 1 or int(scale) != scale or scale < 1:
        raise cli.UserError(f"every, columns and scale must be positive integers "
                            f"(got {every}, {columns}, {scale})")
    tiles = _upscale(frames[::every], scale)
    if labels is not None:
        labels = [str(s) for s in labels]
        if len(labels) == len(frames) and len(frames) != len(tiles):
            labels = labels[::every]
        if len(labels) != len(tiles):
            raise cli.UserError(f"{len(labels)} labels for {len(tiles)} tiles")
    n, h, w, c = tiles.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    sheet = np.full((rows * h + (rows + 1) * gap, columns * w + (columns + 1) * gap, c),
                    gap_value, np.uint8)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, columns)
        y, x = gap + r * (h + gap), gap + col * (w + gap)
        sheet[y:y + h, x:x + w] = tile
    if labels is not None:
        image = _pil(sheet)
        draw = ImageDraw.Draw(image)
        label_font = font(max(8, 8 * scale))
        fill = 200 if c == 1 else (255, 200, 0)
        for i, text in enumerate(labels):
            r, col = divmod(i, columns)
            draw.text((gap + col * (w + gap) + 2, gap + r * (h + gap) + 1), text, fill=fill,
                      font=label_font)
        sheet = np.asarray(image).reshape(sheet.shape)
    if title:
        sheet = _titled(sheet, title, max(10, 6 * scale + 4))
    if path is not None:
        with cli.atomic_output(path) as tmp:
            _pil(sheet).save(tmp, format="PNG")
    return sheet
