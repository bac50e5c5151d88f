"""Making a dance (paper section 3.5) and writing it, without flags.

    models = savedmodels.load_models("saved_models")
    latents, frames = make_dance(models, seed, frames=600)       # seed: latents [T, D] or frames
    write_dance("out/dance.mp4", (latents, frames), fps=24)

The LSTM is primed on the seed window (char-rnn priming: the seed sets the state, it is not part
of the dance), rolls out, and the decoder draws each generated latent. `dance_chunks` yields
the same dance piece by piece, and `write_dance` writes pieces as they come, so that a dance
of any length needs memory for a few pieces: the mp4 and the latents grow on disk, and the GIF
and the Figure-2 sheet use only the first frames. The rollout, the decoder and the writer (with
ffmpeg beside it) run at the same time, each stage at most two pieces ahead of the next (`ahead`).
The four outputs (mp4, GIF, sheet, latents) are written into a temporary directory beside the
destination and replace the old ones together: when any of them cannot be put in place, the old
four stay.
"""

import contextlib
import os
import queue
import shutil
import threading
import time

import numpy as np

from tf_dance import cli, data

GIF_MAX_FRAMES = 600   # a GIF is a preview: 600 frames are 25 s at 24 fps and a few MB
SHEET_FRAMES = 256     # Figure 2: every 4th of the first 256 frames, 64 tiles
TEMP_PREFIX = ".tmp-generate-"
DECODE_PIECE = 1024    # frames decoded and handed to the writer at a time
AHEAD = 2              # pieces a stage may run ahead of the next one


def choose_seeds(available, seed_frames, seed_index, count, random_seed, clips=None):
    """Start index of each dancer's seed window; every window lies inside one clip.

    seed_index: "random" (each dancer its own window, drawn with `random_seed`) or an integer
    (every dancer starts from that window; they then differ only through --noise/--temperature).
    clips: the clip id of each of the `available` frames (None: one clip); a window across a
    cut would prime the LSTM on a jump that no dance contains.
    """
    if seed_frames < 1:
        raise cli.UserError(f"seed_frames must be >= 1, got {seed_frames}")
    if seed_frames > available:
        raise cli.UserError(f"{seed_frames} seed frames requested but the data has only {available}")
    last = available - seed_frames
    clips = np.zeros(available, np.int32) if clips is None else np.asarray(clips)
    inside = np.flatnonzero(clips[:last + 1] == clips[seed_frames - 1:])
    if str(seed_index).strip().lower() == "random":
        if not len(inside):
            longest = max(end - start for start, end in data.clip_bounds(clips))
            raise cli.UserError(f"{seed_frames} seed frames requested but the longest clip has only "
                                f"{longest}")
        rng = np.random.default_rng(random_seed)
        return [int(inside[i]) for i in rng.choice(len(inside), count, replace=count > len(inside))]
    try:
        index = int(seed_index)
    except (TypeError, ValueError):
        raise cli.UserError(f"seed_index must be 'random' or a frame index, got {seed_index!r}") from None
    if not 0 <= index <= last:
        raise cli.UserError(f"seed_index {index} is beyond the data: {seed_frames} seed frames from there "
                            f"need frames {index}..{index + seed_frames - 1}, but the data has {available} "
                            f"(use 0..{last})")
    if clips[index] != clips[index + seed_frames - 1]:
        start, end = data.clip_bounds(clips)[clips[index]]
        raise cli.UserError(f"seed_index {index}: frames {index}..{index + seed_frames - 1} run across a cut "
                            f"(clip {clips[index]} is frames {start}..{end - 1}); choose a window inside one clip")
    return [index] * count


def tile(dances, columns=None, gap=2, gap_value=64):
    """`[K, T, H, W, C]` → `[T, H', W', C]`: the K dancers side by side (rows of `columns`)."""
    k, t, h, w, c = dances.shape
    if k == 1:
        return dances[0]
    columns = columns or min(k, 4)
    rows = -(-k // columns)
    out = np.full((t, rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, c), gap_value, np.uint8)
    for i in range(k):
        r, col = divmod(i, columns)
        out[:, r * (h + gap):r * (h + gap) + h, col * (w + gap):col * (w + gap) + w] = dances[i]
    return out


def check_memory(dancers, frames, frame_shape, scale):
    """Refuses, before the big pictures are made, a dance whose GIF preview (the largest thing held at once:
    its first frames tiled and upscaled, with the encoder's copies) would not fit in memory."""
    h, w, c = frame_shape
    _, height, width, _ = tile(np.zeros((dancers, 1, h, w, c), np.uint8)).shape
    height, width, count = height * scale, width * scale, min(frames, GIF_MAX_FRAMES)
    data.require_memory(int(2.5 * count * height * width * c),
                        f"the {count}-frame GIF preview of {dancers} dancer(s) at scale {scale} ({width}x{height})",
                        "lower --scale or --num_dancers")


def output_paths(out_path):
    """dance.mp4 → dance.mp4, dance.gif, dance_sheet.png, dance_latents.npy."""
    stem = out_path[:-4] if out_path.lower().endswith(".mp4") else out_path
    return dict(video=stem + ".mp4", gif=stem + ".gif", sheet=stem + "_sheet.png", latents=stem + "_latents.npy")


def check_outputs(out_path):
    """Refuses, before any work, outputs that could not replace what is there (a directory in the way)."""
    if not out_path or not out_path.lower().endswith(".mp4"):
        raise cli.UserError(f"the output must be an .mp4 path, got {out_path!r}")
    parent = os.path.dirname(os.path.abspath(out_path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise cli.UserError(f"cannot write {out_path}: {parent} is a file")
    paths = output_paths(out_path)
    for path in paths.values():
        if os.path.isdir(path):
            raise cli.UserError(f"cannot write {path}: a directory is in the way (nothing was written)")
    return paths


# ---- making a dance


def _seed_latents(models, seeds):
    """`[K, T, D]` float latents from latents `[T, D]`/`[K, T, D]` or uint8 frames `[T, H, W, C]`/`[K, T, H, W, C]`."""
    seeds = np.asarray(seeds)
    if seeds.dtype == np.uint8:
        if models.encoder is None:
            raise cli.UserError("seed frames need an encoder: load the models with need_encoder=True")
        if seeds.ndim == 4:
            seeds = seeds[None]
        if seeds.ndim != 5:
            raise cli.UserError(f"seed frames must be uint8 [T, H, W, C] or [K, T, H, W, C], got {seeds.shape}")
        z = models.encoder(seeds.reshape(-1, *seeds.shape[2:]))
        return z.reshape(seeds.shape[0], seeds.shape[1], -1)
    seeds = seeds.astype(np.float32)
    return seeds[None] if seeds.ndim == 2 else seeds


def dance_chunks(models, seeds, frames=600, temperature=None, noise=None, random_seed=0, batch_size=500,
                 timings=None, music=None):
    """Yields `(latents [K, n, D], pictures [K, n, H, W, C])` pieces of K dances of `frames` frames each.

    seeds: one seed window per dancer (see `make_dance`). temperature/noise: None = the model's
    recorded recipe. timings: a dict that receives the seconds spent in "rollout" and "decode". The
    rollout runs ahead in a thread of its own while the decoder draws its last pieces. music: the
    features `[frames, F]` a music-conditioned model dances to (`music.features` of a song).
    """
    if int(frames) != frames or frames < 1:
        raise cli.UserError(f"frames must be a positive integer, got {frames}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise cli.UserError(f"batch_size must be a positive integer, got {batch_size}")
    timings = {} if timings is None else timings
    timings.setdefault("rollout", 0.0)
    timings.setdefault("decode", 0.0)
    z = _seed_latents(models, seeds)
    rolled = ahead(_timed(models.lstm.stream(z, int(frames), temperature, noise, random_seed, music=music), timings,
                          "rollout"))
    try:
        for piece in rolled:
            for a in range(0, piece.shape[1], DECODE_PIECE):
                latents = piece[:, a:a + DECODE_PIECE]
                start = time.perf_counter()
                pictures = models.decoder(latents.reshape(-1, latents.shape[-1]), batch_size=batch_size)
                timings["decode"] += time.perf_counter() - start
                yield latents, pictures.reshape(latents.shape[:2] + pictures.shape[1:])
    finally:
        rolled.close()


def _timed(pieces, timings, key):
    """`pieces`, adding the seconds spent making each one to `timings[key]`."""
    pieces = iter(pieces)
    while True:
        start = time.perf_counter()
        piece = next(pieces, None)
        timings[key] += time.perf_counter() - start
        if piece is None:
            return
        yield piece


def ahead(pieces, depth=AHEAD):
    """Iterates `pieces` in a thread of its own, at most `depth` pieces ahead of the caller.

    The stages of making a dance (rollout, decoding, writing) then run at the same time, as
    TensorFlow and the pipe to ffmpeg release the GIL, and the queue keeps memory bounded. An
    error in the thread is raised in the caller; closing the iterator stops the thread.
    """
    pipe, stop, end = queue.Queue(depth), threading.Event(), object()

    def put(item):
        while not stop.is_set():
            try:
                pipe.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def run():
        try:
            for piece in pieces:
                if not put((piece, None)):
                    return
            put((end, None))
        except BaseException as error:  # handed to the caller
            put((end, error))

    thread = threading.Thread(target=run, name="tf_dance-ahead", daemon=True)
    thread.start()
    try:
        while True:
            piece, error = pipe.get()
            if piece is end:
                if error is not None:
                    raise error
                return
            yield piece
    finally:
        stop.set()
        thread.join()


def make_dance(models, seeds, frames=600, temperature=None, noise=None, random_seed=0, music=None):
    """`(latents, pictures)` of a new dance: `[frames, D]` and uint8 `[frames, H, W, C]`.

    models: `savedmodels.load_models(...)`. seeds: the window that primes the LSTM, as latents
    `[T, D]` or uint8 frames `[T, H, W, C]` (encoded with `models.encoder`); with a leading K axis,
    K dances are made in one batch and both results have that axis too. temperature/noise: None =
    the model's recorded recipe; random_seed keys the sampling and the noise; music: see `dance_chunks`.
    """
    single = np.ndim(seeds) == (4 if np.asarray(seeds).dtype == np.uint8 else 2)
    pieces = list(dance_chunks(models, seeds, frames, temperature, noise, random_seed, music=music))
    latents = np.concatenate([p[0] for p in pieces], 1)
    pictures = np.concatenate([p[1] for p in pieces], 1)
    return (latents[0], pictures[0]) if single else (latents, pictures)


# ---- writing it


class _LatentsFile:
    """A `.npy` of float32 `[K, T, D]` (`[T, D]` for one dancer) filled piece by piece through a file
    handle, not a memory map, so that the written pieces do not stay in memory."""

    def __init__(self, path, dancers, frames, dim):
        shape = (frames, dim) if dancers == 1 else (dancers, frames, dim)
        header = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        self.offset, self.frames, self.dim, self.done = header.offset, frames, dim, 0
        del header
        self.file = open(path, "r+b")

    def write(self, latents):
        n = latents.shape[1]
        if self.done + n > self.frames:
            raise cli.UserError(f"the dance has more than the {self.frames} frames announced")
        for k, rows in enumerate(np.asarray(latents, np.float32)):
            self.file.seek(self.offset + 4 * self.dim * (k * self.frames + self.done))
            self.file.write(np.ascontiguousarray(rows).tobytes())
        self.done += n

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        self.file.close()
        if kind is None and self.done != self.frames:
            raise cli.UserError(f"the dance ended after {self.done} of {self.frames} frames")


def write_dance(out_path, dance, fps, scale=1, frames=None, audio=None):
    """Writes dance.mp4, dance.gif (the first 600 frames), dance_sheet.png (every 4th of the first 256,
    like Figure 2) and dance_latents.npy next to `out_path`; returns their paths and timings (`seconds` in all,
    `write_seconds` busy writing, of which `finish_seconds` for the GIF and the sheet at the end).

    audio: `(waveform, sample_rate)` of the song the dance was made to, muxed into the mp4 (cut to the dance).

    dance: `(latents, pictures)` as `make_dance` returns them, or an iterable of `[K, n, ...]` pieces
    (`dance_chunks`), then `frames` (per dancer) must be given. K dancers are tiled side by side.
    """
    paths = check_outputs(out_path)
    if not (np.isfinite(fps) and fps > 0):
        raise cli.UserError(f"fps must be positive, got {fps}")
    if isinstance(dance, tuple) and len(dance) == 2 and isinstance(dance[0], np.ndarray):
        latents, pictures = dance
        if latents.ndim == 2:
            latents, pictures = latents[None], pictures[None]
        frames, dance = latents.shape[1], [(latents, pictures)]
    elif frames is None:
        raise cli.UserError("write_dance needs the number of frames when the dance comes in pieces")
    from tf_dance import video
    start = time.perf_counter()
    writing = 0.0
    tmp = cli.temp_dir(os.path.dirname(os.path.abspath(out_path)), TEMP_PREFIX)
    try:
        staged = {k: os.path.join(tmp, os.path.basename(p)) for k, p in paths.items()}
        head, latents_file = [], None
        with contextlib.ExitStack() as stack:
            for latents, pictures in stack.enter_context(contextlib.closing(ahead(dance))):
                t = time.perf_counter()
                movie = tile(pictures)
                if latents_file is None:
                    dancers = latents.shape[0]
                    check_memory(dancers, int(frames), pictures.shape[2:], scale)
                    latents_file = stack.enter_context(
                        _LatentsFile(staged["latents"], dancers, int(frames), latents.shape[-1]))
                    write_movie = stack.enter_context(
                        video.video_writer(staged["video"], movie.shape[1], movie.shape[2], fps, scale=scale))
                latents_file.write(latents)
                write_movie(movie)
                kept = sum(len(m) for m in head)
                if kept < GIF_MAX_FRAMES:
                    head.append(movie[:GIF_MAX_FRAMES - kept].copy())
                writing += time.perf_counter() - t
            t = time.perf_counter()
        if latents_file is None:
            raise cli.UserError("the dance has no frames")
        if audio is not None:
            from tf_dance import music
            waveform, rate = audio
            n = int(round(int(frames) / fps * rate))  # a song shorter than the dance ends in silence
            music.mux(staged["video"], np.pad(np.asarray(waveform)[:n], (0, max(0, n - len(waveform)))), rate)
        movie = np.concatenate(head)
        video.write_gif(staged["gif"], movie[:GIF_MAX_FRAMES], fps, scale=scale)
        columns = max(1, 8 // min(dancers, 4))
        video.contact_sheet(staged["sheet"], movie[:SHEET_FRAMES], every=4, columns=columns, scale=scale,
                            labels=[str(i) for i in range(0, min(len(movie), SHEET_FRAMES), 4)],
                            title=f"generated dance: every 4th of the first {min(len(movie), SHEET_FRAMES)} frames")
        _replace_together(staged, paths, tmp)
        finishing = time.perf_counter() - t
        writing += finishing
    except OSError as e:
        raise cli.UserError(f"could not write {out_path}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dict(paths, seconds=time.perf_counter() - start, write_seconds=writing, finish_seconds=finishing)


def _replace_together(staged, paths, tmp):
    """Moves every staged file onto its destination, or none: the old files are set aside first and
    put back when any move fails."""
    for path in paths.values():
        if os.path.isdir(path):
            raise cli.UserError(f"cannot write {path}: a directory is in the way (the old outputs are unchanged)")
    aside, placed = {}, []
    try:
        for key, path in paths.items():
            if os.path.lexists(path):
                aside[key] = os.path.join(tmp, f"old-{key}")
                os.replace(path, aside[key])
        for key, path in paths.items():
            os.replace(staged[key], path)
            placed.append(key)
    except OSError as e:
        for done in placed:
            with contextlib.suppress(OSError):
                os.replace(paths[done], staged[done])
        for done, old in aside.items():
            with contextlib.suppress(OSError):
                os.replace(old, paths[done])
        raise cli.UserError(f"could not put {paths[key]} in place ({e.strerror or e}); "
                            "the old outputs are unchanged") from None
