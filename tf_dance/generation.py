"""Making a dance from exported SavedModels (paper section 3.5), without flags.

`generate(...)` is what `python -m tf_dance.generate` runs: prime the LSTM on real frames of
the dataset (char-rnn priming: the seed window sets the state, it is not part of the dance),
roll out, decode, and write the mp4, a GIF, a Figure-2 contact sheet and the latents. Every
output is first written into a temporary directory beside the destination and moved into
place only when all of them are finished, so a failed run leaves nothing behind.
"""

import os
import shutil
import tempfile
import time

import numpy as np

from tf_dance import cli, data

GIF_MAX_FRAMES = 600   # a GIF is a preview: 600 frames are 25 s at 24 fps and a few MB
SHEET_FRAMES = 256     # Figure 2: every 4th of the first 256 frames, 64 tiles


def resolve(path, name, what=None):
    """A SavedModel version directory from `saved_models`, `saved_models/<name>` or a version dir."""
    what = what or name
    if not path:
        raise cli.UserError(f"no {what} directory given")
    if not os.path.exists(path):
        raise cli.UserError(f"{what} directory not found: {path}")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")) and os.path.isdir(os.path.join(path, name)):
        path = os.path.join(path, name)
    return cli.resolve_model_dir(path, what)


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


def output_paths(out_path):
    """dance.mp4 → dance.mp4, dance.gif, dance_sheet.png, dance_latents.npy."""
    stem = out_path[:-4] if out_path.lower().endswith(".mp4") else out_path
    return dict(video=stem + ".mp4", gif=stem + ".gif", sheet=stem + "_sheet.png", latents=stem + "_latents.npy")


def seed_latents(starts, seed_frames, latents=None, frames=None, encoder_dir=None):
    """`[K, seed_frames, D]`: from the given latents, or by encoding the dataset's frames."""
    if latents is not None:
        return np.stack([latents[s:s + seed_frames] for s in starts])
    from tf_dance import autoencoder
    window = np.concatenate([frames[s:s + seed_frames] for s in starts])
    z = np.asarray(autoencoder.encode_frames(encoder_dir, window), np.float32)  # checks the frame size
    return z.reshape(len(starts), seed_frames, -1)


def _say(progress, message):
    if progress:
        print(message, flush=True)


def generate(model_dir, data_path, out_path, *, latents=None, lstm=None, encoder=None, decoder=None,
             frames=600, seed_frames=50, seed_index="random", num_dancers=1, fps=None, scale=1,
             temperature=1.0, noise=0.0, random_seed=0, batch_size=500, progress=True):
    """Generates `frames` frames per dancer and writes the video, GIF, sheet and latents.

    model_dir: the `saved_models` root holding dance_lstm/, decoder/ and encoder/ (each may be
    overridden by `lstm`, `decoder`, `encoder`: a root or a version directory). data_path: the
    dataset .npz whose frames seed the LSTM (encoded with the encoder) and whose fps the video
    plays at; `latents` (.npy) may replace the encoding, and then data_path may be None.
    K = num_dancers dances are rolled out in one batch and tiled side by side in one video.
    temperature/noise/random_seed go to the rollout (beyond the paper: the paper's MSE model
    is deterministic). Returns a dict with the written paths, what was generated and the
    seconds each stage took (`stage_seconds`: seed, rollout, decode, write).
    """
    start = time.time()
    for name, value in (("frames", frames), ("seed_frames", seed_frames), ("num_dancers", num_dancers),
                        ("scale", scale), ("batch_size", batch_size)):
        if int(value) != value or value < 1:
            raise cli.UserError(f"{name} must be a positive integer, got {value}")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise cli.UserError(f"fps must be positive, got {fps}")
    if not out_path or not out_path.lower().endswith(".mp4"):
        raise cli.UserError(f"the output must be an .mp4 path, got {out_path!r}")
    if data_path is None and latents is None:
        raise cli.UserError("give a dataset (to encode seed frames) or latents")

    lstm_dir = resolve(lstm or model_dir, "dance_lstm", "sequence model")
    decoder_dir = resolve(decoder or model_dir, "decoder")
    dataset = z = None
    data_fps = None
    if data_path is not None:
        dataset, data_fps, extras = data.load_dataset(data_path)
    if latents is not None:
        z = data.load_latents(latents)
        if dataset is not None and len(z) != len(dataset):
            raise cli.UserError(f"{latents} has {len(z)} latents but {data_path} has {len(dataset)} frames: "
                                "they must come from the same video")
    fps = float(fps or data_fps or 24.0)
    clips = extras["clips"] if dataset is not None else data.load_latent_clips(latents, len(z))
    starts = choose_seeds(len(z) if z is not None else len(dataset), seed_frames, seed_index, num_dancers,
                          random_seed, clips=clips)
    encoder_dir = None
    if z is None:
        encoder_dir = resolve(encoder or model_dir, "encoder")

    clock = {"start": time.time()}
    _say(progress, f"[1/4] seeding {num_dancers} dancer(s) with frames "
                   f"{', '.join(f'{s}..{s + seed_frames - 1}' for s in starts)}")
    seeds = seed_latents(starts, seed_frames, latents=z, frames=dataset, encoder_dir=encoder_dir)
    clock["seed"] = time.time()
    _say(progress, f"[2/4] rolling out {frames} frames with {lstm_dir}")
    from tf_dance import autoencoder, rollout, video
    generated = np.asarray(rollout.rollout(lstm_dir, seeds, frames, temperature=temperature, noise=noise,
                                           random_seed=random_seed), np.float32)
    clock["rollout"] = time.time()
    _say(progress, f"[3/4] decoding {generated.shape[0] * generated.shape[1]} frames with {decoder_dir}")
    pictures = autoencoder.decode_latents(decoder_dir, generated.reshape(-1, generated.shape[-1]),
                                          batch_size=batch_size)
    pictures = np.asarray(pictures).reshape(generated.shape[:2] + tuple(np.shape(pictures)[1:]))
    movie = tile(pictures)
    clock["decode"] = time.time()

    paths = output_paths(out_path)
    _say(progress, f"[4/4] writing {', '.join(paths.values())}")
    parent = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-generate-", dir=parent)
    try:
        staged = {k: os.path.join(tmp, os.path.basename(p)) for k, p in paths.items()}
        video.write_video(staged["video"], movie, fps, scale=scale)
        video.write_gif(staged["gif"], movie[:GIF_MAX_FRAMES], fps, scale=scale)
        columns = max(1, 8 // min(num_dancers, 4))
        video.contact_sheet(staged["sheet"], movie[:SHEET_FRAMES], every=4, columns=columns, scale=scale,
                            labels=[str(i) for i in range(0, min(len(movie), SHEET_FRAMES), 4)])
        np.save(staged["latents"], generated[0] if num_dancers == 1 else generated)
        for key, path in paths.items():
            os.replace(staged[key], path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    clock["write"] = time.time()
    names = list(clock)
    stage_seconds = {b: clock[b] - clock[a] for a, b in zip(names, names[1:])}
    return dict(paths, frames=int(frames), dancers=int(num_dancers), fps=fps, seed_indices=starts,
                seed_frames=int(seed_frames), frame_shape=list(movie.shape[1:]), lstm=lstm_dir,
                decoder=decoder_dir, encoder=encoder_dir, seconds=time.time() - start,
                stage_seconds=stage_seconds)
