import numpy as np
import pytest

from tf_dance import dancer


def test_choreography_chains_many_moves_smoothly():
    params, moves = dancer.choreography(18000, seed=0, fps=24.0)
    assert params.shape == (18000, 13) and moves.shape == (18000,)
    assert moves[0] == dancer.MOVES.index("tpose")
    assert len(np.unique(moves)) >= 8
    starts = np.flatnonzero(np.diff(moves)) + 1
    lengths = np.diff(np.concatenate([[0], starts, [18000]]))
    assert lengths[:-1].min() >= 0.5 * 24 and len(starts) > 100
    assert np.abs(np.diff(params[:, :10], axis=0)).max() < 0.6
    facing = params[:, dancer.POSE_NAMES.index("facing")]
    assert facing.min() < 0.5 and facing.max() <= 1.0 + 1e-6


def test_dancer_is_deterministic_per_seed():
    a = dancer.dancer(60, seed=7)
    b = dancer.dancer(60, seed=7)
    c = dancer.dancer(60, seed=8)
    for key in ("frames", "poses", "moves"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["frames"], c["frames"])


def test_dancer_drifts_changes_size_and_stays_inside_margins():
    out = dancer.dancer(1800, seed=4, margin=3)
    frames, poses = out["frames"][..., 0], out["poses"]
    assert frames.shape == (1800, 54, 96) and poses.shape == (1800, len(dancer.POSE_NAMES))
    for border in (frames[:, :3], frames[:, -3:], frames[:, :, :3], frames[:, :, -3:]):
        assert border.max() == 0
    body = frames >= 128
    assert body.sum((1, 2)).min() > 100
    cols = np.arange(96)
    centre = (body.sum(1) * cols).sum(1) / body.sum((1, 2))
    assert centre.max() - centre.min() > 15
    rows = body.any(2)
    height = 54 - rows[:, ::-1].argmax(1) - rows.argmax(1)
    assert height.max() - height.min() > 5
    assert ((frames > 0) & (frames < 255)).any(), "edges should be anti-aliased"
    x, size = poses[:, -2], poses[:, -1]
    assert x.max() - x.min() > 0.15 and size.max() - size.min() > 0.05


def test_turning_narrows_the_silhouette():
    params, _ = dancer.choreography(2, seed=0)
    body, radii = dancer._body(0)
    wide = params.copy()
    wide[:, dancer.POSE_NAMES.index("l_shoulder")] = np.pi / 2
    wide[:, dancer.POSE_NAMES.index("r_shoulder")] = np.pi / 2
    narrow = wide.copy()
    wide[:, dancer.POSE_NAMES.index("facing")] = 1.0
    narrow[:, dancer.POSE_NAMES.index("facing")] = 0.3
    span = lambda p: np.ptp(dancer._capsules(p, body)[..., 0], axis=(1, 2))
    np.testing.assert_allclose(span(narrow), 0.3 * span(wide), rtol=1e-6)


def test_three_channel_dancer_repeats_gray():
    out = dancer.dancer(5, seed=0, channels=3)
    assert out["frames"].shape == (5, 54, 96, 3)
    assert (out["frames"] == out["frames"][..., :1]).all()


def test_one_dance_is_pinned():
    """The default dancer must not drift: datasets, benchmarks and flagfiles were tuned on it."""
    import hashlib
    out = dancer.dancer(300, seed=0)
    digest = {k: hashlib.sha256(np.ascontiguousarray(out[k]).tobytes()).hexdigest()[:16]
              for k in ("frames", "poses", "moves")}
    assert digest == {"frames": "3516677119491766", "poses": "19673b7c7d9c20fd",
                      "moves": "00d285f120a8b453"}


# ---- footage-like: several clips


def _silhouette_stats(frames):
    body = frames[..., 0] >= 128
    area = body.sum((1, 2))
    centre = (body.sum(1) * np.arange(body.shape[2])).sum(1) / np.maximum(area, 1)
    rows, cols = body.any(2), body.any(1)
    height = body.shape[1] - rows[:, ::-1].argmax(1) - rows.argmax(1)
    width = body.shape[2] - cols[:, ::-1].argmax(1) - cols.argmax(1)
    return dict(area=area, centre=centre / body.shape[2], height=height, width=width)


@pytest.fixture(scope="module")
def footage():
    return dancer.footage(1800, 6, seed=1, fps=24.0)


def test_footage_clips_are_contiguous_and_sized(footage):
    clips = footage["clips"]
    assert clips.dtype == np.int32 and clips.shape == (1800,)
    assert footage["frames"].shape == (1800, 54, 96, 1) and footage["poses"].shape == (1800, 15)
    assert list(np.unique(clips)) == list(range(6)) and (np.diff(clips) >= 0).all()
    lengths = np.bincount(clips)
    assert lengths.min() >= 48 and lengths.max() > 1.2 * lengths.min()


def test_footage_clips_are_different_dancers(footage):
    """Each clip has its own build and distance: mean silhouette size differs clearly."""
    stats = _silhouette_stats(footage["frames"])
    per_clip = {k: [stats[k][footage["clips"] == c].mean() for c in range(6)]
                for k in ("area", "height")}
    assert max(per_clip["area"]) > 1.5 * min(per_clip["area"])
    assert max(per_clip["height"]) > 1.25 * min(per_clip["height"])
    # thickness: area per pixel of height differs beyond what size alone explains
    thickness = np.array(per_clip["area"]) / np.array(per_clip["height"]) ** 2
    assert thickness.max() > 1.15 * thickness.min()


def test_footage_travels_across_the_whole_frame_and_turns(footage):
    stats = _silhouette_stats(footage["frames"])
    centre = stats["centre"]
    assert centre.min() < 0.15 and centre.max() > 0.85
    for c in range(6):
        inside = centre[footage["clips"] == c]
        assert inside.max() - inside.min() > 0.5, f"clip {c} stays in one place"
    facing = footage["poses"][:, dancer.POSE_NAMES.index("facing")]
    assert (np.abs(facing) < 0.5).mean() > 0.15, "turned towards profile a good part of the time"
    assert (np.abs(facing) > 0.9).mean() > 0.15, "and facing the camera a good part of the time"
    # In profile the silhouette is narrower than facing the camera with the same arms.
    profile, front = np.abs(facing) < 0.4, np.abs(facing) > 0.95
    assert np.median(stats["width"][profile]) < 0.8 * np.median(stats["width"][front])
    size = footage["poses"][:, -1]
    for c in range(6):
        inside = size[footage["clips"] == c]
        assert inside.max() > 1.15 * inside.min(), f"clip {c} never changes apparent size"


def test_footage_is_deterministic_and_stays_inside_the_margins():
    a = dancer.footage(200, 2, seed=3, margin=3)
    b = dancer.footage(200, 2, seed=3, margin=3)
    for key in ("frames", "poses", "moves", "clips"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["frames"], dancer.footage(200, 2, seed=4, margin=3)["frames"])
    frames = a["frames"][..., 0]
    for border in (frames[:, :3], frames[:, -3:], frames[:, :, :3], frames[:, :, -3:]):
        assert border.max() == 0


def test_footage_needs_two_seconds_per_clip():
    from tf_dance import cli
    with pytest.raises(cli.UserError, match="too few for 8 clips"):
        dancer.footage(8 * 48 - 1, 8, fps=24.0)
    assert len(dancer.footage(8 * 48, 8, fps=24.0)["frames"]) == 8 * 48
