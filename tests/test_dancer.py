import numpy as np

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
