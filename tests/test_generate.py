"""generate: every output with the right frame count and size, seeds, and clean failures."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tf_dance import cli, data, generation, video

DIM = 8


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Untrained tiny encoder, decoder and LSTM exported the way the training scripts export them."""
    import keras
    from tf_dance import autoencoder, rollout, sequence_model
    root = str(tmp_path_factory.mktemp("saved_models"))
    keras.utils.set_random_seed(0)
    encoder = autoencoder.build_encoder(54, 96, 1, [2, 2, 2, 2], latent_dim=DIM)
    decoder = autoencoder.build_decoder(54, 96, 1, [2, 2, 2, 2], latent_dim=DIM)
    cli.export_version(root, "encoder", lambda d: autoencoder.export_encoder(encoder, d))
    cli.export_version(root, "decoder", lambda d: autoencoder.export_decoder(decoder, d))
    lstm = sequence_model.build_model("lstm", DIM, np.zeros(DIM, np.float32), np.ones(DIM, np.float32),
                                      batch_size=1, units=8, num_layers=1)
    rollout.export(lstm, root, "dance_lstm")
    return root


def _frames_in(path, width, height):
    frames, fps = video.read_video(path, width=width, height=height, progress=False)
    return len(frames), fps


def _gif_durations(gif):
    durations = []
    for i in range(gif.n_frames):
        gif.seek(i)
        durations.append(gif.info["duration"])
    return durations


def test_one_dance_writes_every_output(saved_models, tiny_dataset, tmp_path):
    out = str(tmp_path / "dance.mp4")
    result = generation.generate(saved_models, tiny_dataset, out, frames=30, seed_frames=10, seed_index=5,
                                 scale=2, progress=False)
    assert result["seed_indices"] == [5] and result["fps"] == 24.0
    assert sorted(os.listdir(tmp_path)) == ["dance.gif", "dance.mp4", "dance_latents.npy", "dance_sheet.png"]
    assert video.probe(out)["width"] == 192 and video.probe(out)["height"] == 108
    assert _frames_in(out, 192, 108) == (30, 24.0)
    gif = Image.open(result["gif"])  # PIL merges identical frames: check the running time (1/100 s steps)
    assert gif.size == (192, 108)
    assert abs(sum(_gif_durations(gif)) - 30 * 1000 / 24) <= 30 * 10
    latents = np.load(result["latents"])
    assert latents.shape == (30, DIM) and np.all(np.isfinite(latents))
    sheet = Image.open(result["sheet"])  # every 4th of 30 frames: 8 tiles in one row of 8
    assert sheet.size == (8 * 192 + 9 * 2, 108 + 2 * 2)


def test_choose_seeds():
    a = generation.choose_seeds(100, 10, "random", 4, random_seed=3)
    assert a == generation.choose_seeds(100, 10, "random", 4, random_seed=3)
    assert len(set(a)) == 4 and all(0 <= s <= 90 for s in a)
    assert generation.choose_seeds(100, 10, "90", 2, 0) == [90, 90]
    with pytest.raises(cli.UserError, match="beyond the data"):
        generation.choose_seeds(100, 10, 91, 1, 0)
    with pytest.raises(cli.UserError, match="only 100"):
        generation.choose_seeds(100, 101, "random", 1, 0)


def test_choose_seeds_keeps_each_window_inside_one_clip():
    clips = np.repeat(np.arange(3, dtype=np.int32), [30, 12, 58])
    starts = generation.choose_seeds(100, 20, "random", 50, random_seed=1, clips=clips)
    assert all(clips[s] == clips[s + 19] for s in starts)
    assert {int(clips[s]) for s in starts} == {0, 2}, "clip 1 is too short for 20 frames"
    one = generation.choose_seeds(100, 20, "random", 4, random_seed=3)
    assert one == generation.choose_seeds(100, 20, "random", 4, 3, clips=np.zeros(100, np.int32))
    assert generation.choose_seeds(100, 20, "10", 2, 0, clips=clips) == [10, 10]
    with pytest.raises(cli.UserError, match="run across a cut"):
        generation.choose_seeds(100, 20, "11", 1, 0, clips=clips)
    with pytest.raises(cli.UserError, match="longest clip has only 58"):
        generation.choose_seeds(100, 59, "random", 1, 0, clips=clips)


def test_generate_primes_inside_one_clip(saved_models, two_clip_dataset, tmp_path):
    _, _, extras = data.load_dataset(two_clip_dataset)
    clips = extras["clips"]
    (_, cut), _ = data.clip_bounds(clips)
    seed_frames = cut - 10
    result = generation.generate(saved_models, two_clip_dataset, str(tmp_path / "a.mp4"), frames=3,
                                 seed_frames=seed_frames, num_dancers=6, random_seed=2, progress=False)
    assert all(clips[s] == clips[s + seed_frames - 1] for s in result["seed_indices"])
    with pytest.raises(cli.UserError, match="run across a cut"):
        generation.generate(saved_models, two_clip_dataset, str(tmp_path / "b.mp4"), frames=3,
                            seed_frames=seed_frames, seed_index=11, progress=False)
    latents = tmp_path / "z.npy"  # seeding from latents: the clip ids come from z_clips.npy
    np.save(latents, np.zeros((len(clips), DIM), np.float32))
    np.save(tmp_path / "z_clips.npy", clips)
    with pytest.raises(cli.UserError, match="run across a cut"):
        generation.generate(saved_models, None, str(tmp_path / "c.mp4"), latents=str(latents),
                            frames=3, seed_frames=seed_frames, seed_index=11, progress=False)


def test_tile_places_each_dancer():
    dances = np.stack([np.full((2, 3, 4, 1), 10 * (i + 1), np.uint8) for i in range(5)])
    tiled = generation.tile(dances, gap=1, gap_value=0)
    assert tiled.shape == (2, 3 * 2 + 1, 4 * 4 + 3, 1)
    assert tiled[0, 0, 0, 0] == 10 and tiled[0, 0, 5, 0] == 20 and tiled[0, 4, 0, 0] == 50
    assert generation.tile(dances[:1]).shape == (2, 3, 4, 1)


def test_cli_tiles_dancers_seeded_from_latents(run_module, saved_models, tiny_dataset, tmp_path):
    frames, _, _ = data.load_dataset(tiny_dataset)
    latents = str(tmp_path / "latents.npy")
    np.save(latents, np.random.default_rng(0).normal(size=(len(frames), DIM)).astype(np.float32))
    out = tmp_path / "cli" / "trio.mp4"
    result = run_module("tf_dance.generate", f"--lstm={saved_models}/dance_lstm", f"--decoder={saved_models}",
                        f"--latents={latents}", "--frames=12", "--seed_frames=4", "--num_dancers=3",
                        "--seed=7", "--fps=10", f"--out={out}")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 12 and summary["dancers"] == 3 and summary["fps"] == 10.0
    assert len(set(summary["seed_indices"])) == 3 and max(summary["seed_indices"]) <= len(frames) - 4
    assert sorted(os.listdir(out.parent)) == ["trio.gif", "trio.mp4", "trio_latents.npy", "trio_sheet.png"]
    assert np.load(out.parent / "trio_latents.npy").shape == (3, 12, DIM)
    assert _frames_in(str(out), 3 * 96 + 2 * 2, 54) == (12, 10.0)
    assert Image.open(out.parent / "trio.gif").size == (3 * 96 + 2 * 2, 54)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("small") / "small.npz")
    return data.save_dataset(path, np.zeros((40, 48, 64, 1), np.uint8), 24.0)


@pytest.mark.parametrize("args, message", [
    (["--model_dir=/nonexistent"], "not found"),
    (["--seed_index=235"], "beyond the data"),
    (["--frames=0"], "frames"),
    (["--data={small}"], "encoder"),
])
def test_cli_rejects_bad_input_cleanly(run_module, fails_cleanly, saved_models, tiny_dataset, small_dataset,
                                       tmp_path, args, message):
    args = [a.format(small=small_dataset) for a in args]
    if not any(a.startswith("--model_dir") for a in args):
        args.append(f"--model_dir={saved_models}")
    if not any(a.startswith("--data") for a in args):
        args.append(f"--data={tiny_dataset}")
    out = tmp_path / "bad" / "dance.mp4"
    fails_cleanly(run_module("tf_dance.generate", *args, "--seed_frames=10", f"--out={out}"), message)
    assert not out.parent.exists() or os.listdir(out.parent) == []
