"""`generation`: choosing seed windows (inside clips), tiling dancers, running pieces ahead, the memory a
preview needs (the scripts that use it: test_generate.py)."""

import os

import numpy as np
import pytest

from tf_dance import cli, data, generation


DIM = 8


def test_a_preview_too_big_for_memory_is_refused_before_any_output(tmp_path, monkeypatch):
    """16 dancers at scale 20 tile into 7800x4440 frames: their GIF preview (and, before, the video's 64-frame
    RGB chunks) would not fit; refused before anything big is allocated or written."""
    monkeypatch.setattr(data, "available_memory", lambda: 100 << 20)
    latents, pictures = np.zeros((16, 8, DIM), np.float32), np.zeros((16, 8, 54, 96, 1), np.uint8)
    with pytest.raises(cli.UserError, match=r"the 8-frame GIF preview of 16 dancer\(s\) at scale 20 \(7800x4440\) "
                                            r"would take 660.6 MiB, more than the 100.0 MiB"):
        generation.write_dance(str(tmp_path / "dance.mp4"), (latents, pictures), fps=24.0, scale=20)
    assert os.listdir(tmp_path) == []


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


def test_ahead_runs_a_bounded_number_of_pieces_ahead_and_hands_errors_on():
    import threading
    import time
    made = []

    def pieces():
        for i in range(10):
            made.append(i)
            yield i
        raise ValueError("broken piece")

    run = generation.ahead(pieces(), depth=2)
    assert next(run) == 0
    time.sleep(0.3)
    assert len(made) == 4  # one handed out, two queued, one waiting for room: memory stays bounded
    assert list(zip(range(9), run)) == [(i, i + 1) for i in range(9)]
    with pytest.raises(ValueError, match="broken piece"):
        next(run)
    run = generation.ahead(iter(range(1000)), depth=1)
    assert next(run) == 0
    run.close()  # a writer that fails stops the stages before it
    assert not [t for t in threading.enumerate() if t.name == "tf_dance-ahead"]


def test_tile_places_each_dancer():
    dances = np.stack([np.full((2, 3, 4, 1), 10 * (i + 1), np.uint8) for i in range(5)])
    tiled = generation.tile(dances, gap=1, gap_value=0)
    assert tiled.shape == (2, 3 * 2 + 1, 4 * 4 + 3, 1)
    assert tiled[0, 0, 0, 0] == 10 and tiled[0, 0, 5, 0] == 20 and tiled[0, 4, 0, 0] == 50
    assert generation.tile(dances[:1]).shape == (2, 3, 4, 1)


def test_paper_priming_on_one_random_real_frame_is_available():
    """The paper starts from one random real pose; the port primes on --seed_frames (default 50)."""
    from tf_dance import generation
    starts = generation.choose_seeds(1000, 1, "random", 3, random_seed=0)
    assert len(starts) == 3 and all(0 <= s <= 999 for s in starts)
    assert len(set(generation.choose_seeds(1000, 1, "random", 3, random_seed=1)) ^ set(starts)) > 0
