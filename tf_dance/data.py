"""The dataset format shared by every step: one `.npz` per video.

`frames`: uint8 `[N, H, W, C]` (C = 1 grayscale silhouettes, as in the paper, or 3);
`fps`: scalar frame rate. Optional extras ride along (e.g. the synthetic dancer's `poses`).
Several videos share one dataset through `clips`: int32 `[N]`, the clip of every frame (one
contiguous run per clip, numbered from 0), with optional `clip_names` (unicode `[K]`). A file
without `clips` is one clip. A soundtrack rides along as `music`: float32 `[N, F]` per-frame
features (`tf_dance.music`), named by `music_names` (unicode `[F]`); absent without audio.
Loaded with `allow_pickle=False`: a dataset is data, never code.
"""

import glob
import json
import os
import resource
import zipfile
import zlib

import numpy as np

from tf_dance import cli

HEIGHT, WIDTH = 54, 96
# Frame rates a dataset may have: ffmpeg writes a rate with two decimals, and beyond 1000 fps no dance is filmed.
MIN_FPS, MAX_FPS = 0.1, 1000.0
# Latent values beyond this are refused: an encoder's are a few units, and far larger ones overflow float32 in the
# statistics of training and evaluation (at 1e30 the standardised latents were all 0: a model trained on nothing).
MAX_LATENT = 1e6


def check_fps(fps, what):
    """`fps` as a float, or `cli.UserError` naming `what` unless it is in MIN_FPS..MAX_FPS."""
    if not MIN_FPS <= fps <= MAX_FPS:  # NaN fails too
        raise cli.UserError(f"{what}: fps must be in {MIN_FPS:g}..{MAX_FPS:g}, got {fps:g}")
    return float(fps)


def save_dataset(path, frames, fps, clips=None, clip_names=None, **extras):
    """Validates and writes a dataset atomically (temporary file, then rename).

    clips: the clip index of every frame (see the module docstring); None writes none (one clip).
    """
    frames = np.asarray(frames)
    _check_frames(frames, path)
    check_fps(fps, path)
    if clips is not None:
        extras["clips"] = check_clips(clips, len(frames), path)
    if clip_names is not None:
        if clips is None:
            raise cli.UserError(f"{path}: clip_names given without clips")
        extras["clip_names"] = _check_clip_names(clip_names, extras["clips"], path)
    if "music" in extras or "music_names" in extras:
        extras["music"], extras["music_names"] = _check_music(
            extras.get("music"), extras.get("music_names"), len(frames), path)
    with cli.atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, frames=frames, fps=np.float32(fps), **extras)
    return path


def load_dataset(path, height=None, width=None, channels=None):
    """Returns `(frames uint8 [N,H,W,C], fps float, extras dict)`; raises `cli.UserError` on bad input.

    `extras["clips"]` is always there (zeros for a file without clips), so callers never need
    to ask whether a dataset holds one video or several.
    """
    cli.require_file(path, "dataset")
    check_fits(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise cli.UserError(f"{path} is not a readable .npz dataset ({e})") from None
    if "frames" not in contents:
        raise cli.UserError(f"{path} has no 'frames' array (found: {', '.join(contents) or 'nothing'})")
    frames = contents.pop("frames")
    _check_frames(frames, path)
    fps = _read_fps(contents.pop("fps", 0.0), path)
    n, h, w, c = frames.shape
    if (height and h != height) or (width and w != width):
        raise cli.UserError(
            f"{path} has {w}x{h} frames but {width or w}x{height or h} are needed "
            "(re-run prepare_video with --width/--height)")
    if channels and c != channels:
        raise cli.UserError(f"{path} has {c}-channel frames but {channels} are needed")
    contents["clips"] = (check_clips(contents["clips"], n, path) if "clips" in contents
                         else np.zeros(n, np.int32))
    if "clip_names" in contents:
        contents["clip_names"] = _check_clip_names(contents["clip_names"], contents["clips"], path)
    if "music" in contents or "music_names" in contents:
        contents["music"], contents["music_names"] = _check_music(
            contents.get("music"), contents.get("music_names"), n, path)
    return frames, fps, contents


def _read_fps(fps, path):
    fps = np.asarray(fps)
    if fps.size != 1 or fps.dtype.kind not in "iuf":
        raise cli.UserError(f"{path}: 'fps' must be one number, got a {fps.dtype} array of shape {fps.shape}")
    return check_fps(float(fps.reshape(-1)[0]), path)


def dataset_fps(path):
    """The dataset's frame rate, checked as `load_dataset` checks it, without reading its frames."""
    cli.require_file(path, "dataset")
    try:
        with np.load(path, allow_pickle=False) as npz:
            fps = npz["fps"] if "fps" in npz.files else 0.0
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise cli.UserError(f"{path} is not a readable .npz dataset ({e})") from None
    return _read_fps(fps, path)


def check_clips(clips, n, where="clips", numbered=True):
    """Clip ids as int32 `[n]` (zeros for None), or `cli.UserError` (a ValueError) naming `where`.

    Each clip must be one run of frames with its own id. `numbered` (the ids a dataset or a
    latents file stores) also asks for ids 0, 1, 2... in order; without it any non-decreasing
    ids pass (a strided or cut-out stretch of those).
    """
    if clips is None:
        return np.zeros(n, np.int32)
    clips = np.asarray(clips)
    if clips.shape != (n,) or not np.issubdtype(clips.dtype, np.integer):
        raise cli.UserError(f"{where}: clip ids must be {n} integers (one id per frame), "
                            f"got {clips.dtype} {clips.shape}")
    steps = np.diff(clips.astype(np.int64))
    if numbered and (n and clips[0] != 0 or np.any((steps != 0) & (steps != 1))):
        raise cli.UserError(f"{where}: clip ids must start at 0 and go up by 1 at each cut "
                            "(each clip one contiguous run of frames)")
    if np.any(steps < 0):
        raise cli.UserError(f"{where}: clip ids must be non-decreasing (each clip one run of frames)")
    return clips.astype(np.int32)


def _check_clip_names(names, clips, path):
    names = np.asarray(names)
    count = int(clips[-1]) + 1
    if names.dtype.kind != "U" or names.shape != (count,):
        raise cli.UserError(f"{path}: 'clip_names' must be {count} strings (one per clip), "
                            f"got {names.dtype} {names.shape}")
    return names


def _check_music(music, names, n, path):
    """float32 `[n, F]` finite music features and their F names, or `cli.UserError`."""
    if music is None or names is None:
        raise cli.UserError(f"{path}: 'music' and 'music_names' go together (found only "
                            f"'{'music' if names is None else 'music_names'}')")
    music, names = np.asarray(music), np.asarray(names)
    if music.ndim != 2 or len(music) != n or not music.shape[1] or music.dtype.kind != "f":
        raise cli.UserError(f"{path}: 'music' must be float [{n}, F] (one row per frame), "
                            f"got {music.dtype} {music.shape}")
    if names.dtype.kind != "U" or names.shape != (music.shape[1],):
        raise cli.UserError(f"{path}: 'music_names' must be {music.shape[1]} strings (one per "
                            f"feature), got {names.dtype} {names.shape}")
    with np.errstate(over="ignore"):
        music = music.astype(np.float32)
    if not np.all(np.isfinite(music)):
        raise cli.UserError(f"{path}: 'music' holds NaN or inf values")
    return music, names


def clip_bounds(clips):
    """`[(start, end), ...]`, end exclusive: each run of equal clip ids (a clip's frames), in order."""
    clips = np.asarray(clips)
    if clips.size == 0:
        return []
    cuts = (np.flatnonzero(clips[1:] != clips[:-1]) + 1).tolist()
    return list(zip([0, *cuts], [*cuts, len(clips)]))


def latent_clips_path(latents_path):
    """`X.npy` → `X_clips.npy`: where `encode` keeps the clip of every latent."""
    return os.path.splitext(latents_path)[0] + "_clips.npy"


def load_latent_clips(latents_path, n):
    """int32 `[n]` clip ids of the latents at `latents_path`; zeros (one clip) if none were saved."""
    path = latent_clips_path(latents_path)
    if not os.path.exists(path):
        return np.zeros(n, np.int32)
    cli.require_file(path, "clip ids file")
    try:
        clips = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise cli.UserError(f"{path} is not a readable .npy array ({e})") from None
    if isinstance(clips, np.lib.npyio.NpzFile):
        clips.close()
        raise cli.UserError(f"{path}: clip ids must be a .npy array, not an archive")
    if clips.ndim != 1:
        raise cli.UserError(f"{path}: clip ids must be a 1-d .npy array")
    if len(clips) != n:
        raise cli.UserError(f"{path} has {len(clips)} clip ids but {latents_path} has {n} latents: "
                            "re-run encode to write both")
    return check_clips(clips, n, path)


def latent_music_path(latents_path):
    """`X.npy` → `X_music.npz`: where `encode` keeps the music features of the dataset it encoded."""
    return os.path.splitext(latents_path)[0] + "_music.npz"


def save_latent_music(latents_path, latents, music, names, fps):
    """The dataset's `music` `[N, F]` (with `names` and `fps`) beside the latents it pairs with, keyed by
    their checksum so that a replaced latents file is not trained with another video's music."""
    with cli.atomic_output(latent_music_path(latents_path)) as tmp, open(tmp, "wb") as f:
        np.savez(f, music=np.asarray(music, np.float32), music_names=np.asarray(names, str),
                 fps=np.float64(fps), latents_crc32=np.int64(_checksum(latents)))


def load_latent_music(latents_path, latents):
    """(music float32 `[N, F]`, names, fps) that `encode` saved beside the latents, or None when there is none."""
    path = latent_music_path(latents_path)
    if not os.path.exists(path):
        return None
    cli.require_file(path, "music features file")
    try:
        with np.load(path, allow_pickle=False) as f:
            contents = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise cli.UserError(f"{path} is not a readable .npz archive ({e})") from None
    missing = sorted({"music", "music_names", "fps", "latents_crc32"} - set(contents))
    if missing:
        raise cli.UserError(f"{path} lacks {missing}: re-run encode")
    if int(contents["latents_crc32"]) != _checksum(latents):
        raise cli.UserError(f"{path} holds the music of other latents than {latents_path}: re-run encode to write both")
    music, names = _check_music(contents["music"], contents["music_names"], len(latents), path)
    return music, names, check_fps(float(contents["fps"]), path)


def latent_source_path(latents_path):
    """`X.npy` → `X_encoder.json`: which encoder, of which autoencoder training, `encode` made X with."""
    return os.path.splitext(latents_path)[0] + "_encoder.json"


def _checksum(latents):
    return zlib.crc32(np.ascontiguousarray(latents, np.float32).tobytes())


def save_latent_source(latents_path, latents, encoder_dir, training_id):
    """Writes `latent_source_path(latents_path)`: the encoder, its training id and a checksum of `latents`."""
    record = {"encoder": os.path.abspath(encoder_dir), "training_id": training_id, "frames": int(len(latents)),
              "dim": int(np.shape(latents)[1]), "crc32": _checksum(latents)}
    with cli.atomic_output(latent_source_path(latents_path)) as tmp, open(tmp, "w") as f:
        json.dump(record, f, indent=2)


def latent_source(latents_path, latents):
    """The record `encode` wrote beside the latents at `latents_path` (`save_latent_source`), or {} when
    there is none or it describes other latents (the file was replaced since)."""
    path = latent_source_path(latents_path)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise cli.UserError(f"{path} (which encoder made {latents_path}) is unreadable ({e}); delete it or "
                            "re-run encode") from None
    if not isinstance(record, dict) or record.get("crc32") != _checksum(latents):
        return {}
    return record


def _check_frames(frames, path):
    if frames.dtype != np.uint8:
        raise cli.UserError(f"{path}: 'frames' must be uint8, got {frames.dtype}")
    if frames.ndim != 4:
        raise cli.UserError(f"{path}: 'frames' must be [N, H, W, C], got shape {frames.shape}")
    if frames.shape[0] == 0:
        raise cli.UserError(f"{path}: the dataset has no frames")
    if frames.shape[3] not in (1, 3):
        raise cli.UserError(f"{path}: frames must have 1 or 3 channels, got {frames.shape[3]}")
    if frames.shape[1] < 8 or frames.shape[2] < 8:
        raise cli.UserError(f"{path}: frames of {frames.shape[2]}x{frames.shape[1]} are too small")


def load_latents(path, dim=None, dancers=False):
    """A `[N, D]` float32 vector sequence with every value finite.

    Accepts the encoder's `.npy` or a `.npz` holding `latents` or `vectors` (the Perlin set).
    `dancers`: a rollout saved by generate/evaluate instead, float `[T, D]` or `[K, T, D]`,
    read as it is (a diverged rollout is for `report.evaluate_dance` to judge, not a bad file).
    """
    cli.require_file(path, "generated latents file" if dancers else "latents file")
    check_fits(path)
    try:
        z = np.load(path, allow_pickle=False)
        if isinstance(z, np.lib.npyio.NpzFile):
            with z:
                key = next((k for k in ("latents", "vectors") if k in z.files), None)
                if key is None:
                    raise cli.UserError(f"{path} has neither 'latents' nor 'vectors'")
                z = z[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise cli.UserError(f"{path} is not a readable .npy/.npz array ({e})") from None
    if dancers:
        if z.ndim not in (2, 3) or not np.issubdtype(z.dtype, np.floating):
            raise cli.UserError(f"{path}: generated latents must be a float [T, D] or [K, T, D] .npy array")
        with np.errstate(over="ignore"):
            return z.astype(np.float32)
    if z.ndim != 2 or z.shape[0] == 0:
        raise cli.UserError(f"{path}: latents must be a non-empty [N, D] array, got shape {z.shape}")
    if dim and z.shape[1] != dim:
        raise cli.UserError(f"{path}: latents are {z.shape[1]}-d but the model needs {dim}-d")
    if not np.issubdtype(z.dtype, np.floating):
        raise cli.UserError(f"{path}: latents must be floating point, got {z.dtype}")
    if not np.all(np.isfinite(z)):
        bad = int(np.sum(~np.isfinite(z).all(axis=1)))
        raise cli.UserError(f"{path}: {bad} latent vectors contain NaN or inf")
    with np.errstate(over="ignore"):
        z32 = z.astype(np.float32)
    if not np.all(np.isfinite(z32)):
        raise cli.UserError(f"{path}: latent values up to {float(np.max(np.abs(z))):.3g} do not fit float32 "
                            f"(largest {float(np.finfo(np.float32).max):.3g}); rescale them")
    check_latent_range(z32, path)
    return z32


def check_latent_range(z, what):
    """`cli.UserError` naming `what` when a value of `z` exceeds `MAX_LATENT` in magnitude."""
    peak = float(np.max(np.abs(z), initial=0.0))
    if peak > MAX_LATENT:
        raise cli.UserError(f"{what}: latent values reach {peak:.3g}, beyond the {MAX_LATENT:g} accepted (an encoder's "
                            "are a few units; far larger ones overflow float32 in training's and evaluation's "
                            "statistics, leaving nothing to learn); rescale them")


def available_memory():
    """Bytes this process can still allocate: the smallest of the machine's available memory,
    the cgroup's remaining limit (containers) and the address-space limit."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        limits.append(int(info["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f, open("/sys/fs/cgroup/memory.current") as g:
            limits.append(int(f.read()) - int(g.read()))
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    return max(0, min(limits)) if limits else None


def _size(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def array_headers(path):
    """`{name: (shape, dtype)}` of the arrays in a `.npy` (name "") or `.npz`, read from their
    headers without loading or inflating any data; a header that claims more data than the
    file holds is refused. An `.npz` entry that is not an array (numpy would load it as bytes,
    whatever its name) counts as the bytes its zip entry inflates to."""
    try:
        if zipfile.is_zipfile(path):
            headers = {}
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                    with z.open(info) as f:
                        is_array = f.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX
                    if not is_array:
                        headers[name] = ((info.file_size,), np.dtype(np.uint8))
                        continue
                    with z.open(info) as f:
                        shape, dtype, offset = _npy_header(f)
                    headers[name] = (shape, dtype)
                    if offset + _nbytes(shape, dtype) > info.file_size:
                        raise cli.UserError(f"{path}: '{name}' claims {_size(_nbytes(shape, dtype))} "
                                            f"but its zip entry holds {_size(info.file_size)}; the file is damaged")
            return headers
        with open(path, "rb") as f:
            shape, dtype, offset = _npy_header(f)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise cli.UserError(f"{path} is not a readable .npy/.npz array ({e})") from None
    size = os.path.getsize(path)
    if offset + _nbytes(shape, dtype) > size:
        raise cli.UserError(f"{path}: its header claims {_size(_nbytes(shape, dtype))} of data but the file "
                            f"holds {_size(size - offset)}; the file is truncated or damaged")
    return {"": (shape, dtype)}


def _npy_header(f):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError("it holds Python objects (pickles), which are never loaded")
    return shape, dtype, f.tell()


def _nbytes(shape, dtype):
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def check_fits(path):
    """Refuses, before reading any data, a `.npy`/`.npz` whose arrays would not fit in memory."""
    needed = sum(_nbytes(shape, dtype) for shape, dtype in array_headers(path).values())
    available = available_memory()
    if available is not None and needed > available:
        raise cli.UserError(f"{path} holds arrays of {_size(needed)}, more than the {_size(available)} of memory "
                            "available")
    return needed


def require_memory(needed, what, advice, available=None):
    """Refuses `what` when it would take more than the memory available (or `available`) with one line ending in
    `advice`; returns the memory available (None: unknown)."""
    available = available_memory() if available is None else available
    if available is not None and needed > available:
        raise cli.UserError(f"{what} would take {_size(needed)}, more than the {_size(available)} of memory "
                            f"available; {advice}")
    return available


def check_batch(batch_size, train_frames, frame_shape):
    """Refuses a training batch larger than the training frames (each batch would repeat frames)
    or whose float32 input and target alone would not fit in memory, before TensorFlow tries."""
    if batch_size > train_frames:
        raise cli.UserError(f"batch_size {batch_size} is larger than the {train_frames} training frames; "
                            "lower --batch_size")
    needed = 2 * batch_size * int(np.prod(frame_shape)) * 4
    available = available_memory()
    if available is not None and needed > available:
        raise cli.UserError(f"a batch of {batch_size} frames needs {_size(needed)}, more than the "
                            f"{_size(available)} of memory available; lower --batch_size")


def save_array(path, array):
    with cli.atomic_output(path) as tmp:
        np.save(tmp, array)
    return path


def dataset_paths(path):
    """The `.npz` files of a dataset given as one file, a directory of shards, or a glob of shards."""
    if not path:
        raise cli.UserError("no dataset given")
    if any(c in path for c in "*?["):
        paths = sorted(p for p in glob.glob(path) if os.path.isfile(p))
        if not paths:
            raise cli.UserError(f"no dataset files match {path}")
        return paths
    if os.path.isdir(path):
        paths = sorted(glob.glob(os.path.join(glob.escape(path), "*.npz")))
        if not paths:
            raise cli.UserError(f"dataset directory {path} holds no .npz shards")
        return paths
    return [cli.require_file(path, "dataset")]


def frames_shape(path):
    """`(N, H, W, C)` of a dataset's frames, read from the array header alone (nothing is decompressed
    past it), so a sharded dataset can be sized without loading it."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("frames.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    except KeyError:
        raise cli.UserError(f"{path} has no 'frames' array") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise cli.UserError(f"{path} is not a readable .npz dataset ({e})") from None
    if dtype != np.uint8 or len(shape) != 4 or shape[3] not in (1, 3) or not shape[0]:
        raise cli.UserError(f"{path}: 'frames' must be non-empty uint8 [N, H, W, 1 or 3], got {dtype} {shape}")
    return tuple(int(d) for d in shape)
