"""The dataset format shared by every step: one `.npz` per video.

`frames`: uint8 `[N, H, W, C]` (C = 1 grayscale silhouettes, as in the paper, or 3);
`fps`: scalar frame rate. Optional extras ride along (e.g. the synthetic dancer's `poses`).
Loaded with `allow_pickle=False`: a dataset is data, never code.
"""

import glob
import os
import zipfile

import numpy as np

from tf_dance import cli

HEIGHT, WIDTH = 54, 96


def save_dataset(path, frames, fps, **extras):
    """Validates and writes a dataset atomically (temporary file, then rename)."""
    frames = np.asarray(frames)
    _check_frames(frames, path)
    if not np.isfinite(fps) or fps <= 0:
        raise cli.UserError(f"fps must be positive, got {fps}")
    with cli.atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, frames=frames, fps=np.float32(fps), **extras)
    return path


def load_dataset(path, height=None, width=None, channels=None):
    """Returns `(frames uint8 [N,H,W,C], fps float, extras dict)`; raises `cli.UserError` on bad input."""
    cli.require_file(path, "dataset")
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise cli.UserError(f"{path} is not a readable .npz dataset ({e})") from None
    if "frames" not in contents:
        raise cli.UserError(f"{path} has no 'frames' array (found: {', '.join(contents) or 'nothing'})")
    frames = contents.pop("frames")
    _check_frames(frames, path)
    fps = float(contents.pop("fps", 0.0))
    if not np.isfinite(fps) or fps <= 0:
        raise cli.UserError(f"{path} has no valid positive 'fps'")
    n, h, w, c = frames.shape
    if (height and h != height) or (width and w != width):
        raise cli.UserError(
            f"{path} has {w}x{h} frames but {width or w}x{height or h} are needed "
            "(re-run prepare_video with --width/--height)")
    if channels and c != channels:
        raise cli.UserError(f"{path} has {c}-channel frames but {channels} are needed")
    return frames, fps, contents


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


def to_float(frames):
    """uint8 frames → float32 in [0, 1], the autoencoder's input."""
    return frames.astype(np.float32) / 255.0


def load_latents(path, dim=None):
    """A `[N, D]` float32 vector sequence with every value finite.

    Accepts the encoder's `.npy` or a `.npz` holding `latents` or `vectors` (the Perlin set).
    """
    cli.require_file(path, "latents file")
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
    if z.ndim != 2 or z.shape[0] == 0:
        raise cli.UserError(f"{path}: latents must be a non-empty [N, D] array, got shape {z.shape}")
    if dim and z.shape[1] != dim:
        raise cli.UserError(f"{path}: latents are {z.shape[1]}-d but the model needs {dim}-d")
    if not np.issubdtype(z.dtype, np.floating):
        raise cli.UserError(f"{path}: latents must be floating point, got {z.dtype}")
    if not np.all(np.isfinite(z)):
        bad = int(np.sum(~np.isfinite(z).all(axis=1)))
        raise cli.UserError(f"{path}: {bad} latent vectors contain NaN or inf")
    return z.astype(np.float32)


def save_array(path, array):
    with cli.atomic_output(path) as tmp:
        np.save(tmp, array)
    return path


def ensure_parent(path):
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)


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
