import os

import numpy as np
import pytest

from tf_dance import data, synthesize

# ---- Perlin noise


def test_gradient_noise_vanishes_on_the_lattice_and_varies_between():
    noise = synthesize.GradientNoise(3)
    ints = np.arange(-5, 40)
    np.testing.assert_allclose(noise.noise1(ints), 0.0, atol=1e-12)
    np.testing.assert_allclose(noise.noise2(ints[:, None], ints[None, :]), 0.0, atol=1e-12)
    xs = np.linspace(0, 30, 3001)
    grid = noise.noise2(xs[:, None], xs[None, ::10])
    assert np.abs(grid).max() <= 1.0 + 1e-9
    assert grid.std() > 0.15
    line = noise.noise1(xs)
    assert np.abs(line).max() <= 1.0 + 1e-9 and line.std() > 0.15


def test_perlin_vectors_are_smooth_bounded_and_seeded():
    v = synthesize.perlin_vectors(2000, seed=1, dim=10, fps=24, rate=0.5)
    assert v.shape == (2000, 10) and v.dtype == np.float32
    assert np.abs(v).max() <= 1.0 and v.std() > 0.15
    assert np.abs(np.diff(v, axis=0)).max() < 0.1
    corr = np.corrcoef(v.T)[~np.eye(10, dtype=bool)]
    assert np.abs(corr).max() < 0.9
    np.testing.assert_array_equal(v, synthesize.perlin_vectors(2000, seed=1))
    assert not np.allclose(v, synthesize.perlin_vectors(2000, seed=2))


def test_perlin_strips_show_recent_values():
    v = np.linspace(-1, 1, 30, dtype=np.float32)[:, None].repeat(2, axis=1)
    strips = synthesize.perlin_strips(v, height=20, width=8)
    assert strips.shape == (30, 20, 8, 1) and strips.dtype == np.uint8
    assert strips[29, 0, -1, 0] == 255 and strips[0, 0, 0, 0] == 0
    assert (np.diff(strips[29, 0, :, 0].astype(int)) > 0).all()


# ---- Choreography and rendering


def test_choreography_chains_many_moves_smoothly():
    params, moves = synthesize.choreography(18000, seed=0, fps=24.0)
    assert params.shape == (18000, 13) and moves.shape == (18000,)
    assert moves[0] == synthesize.MOVES.index("tpose")
    assert len(np.unique(moves)) >= 8
    starts = np.flatnonzero(np.diff(moves)) + 1
    lengths = np.diff(np.concatenate([[0], starts, [18000]]))
    assert lengths[:-1].min() >= 0.5 * 24 and len(starts) > 100
    assert np.abs(np.diff(params[:, :10], axis=0)).max() < 0.6
    facing = params[:, synthesize.POSE_NAMES.index("facing")]
    assert facing.min() < 0.5 and facing.max() <= 1.0 + 1e-6


def test_dancer_is_deterministic_per_seed():
    a = synthesize.dancer(60, seed=7)
    b = synthesize.dancer(60, seed=7)
    c = synthesize.dancer(60, seed=8)
    for key in ("frames", "poses", "moves"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["frames"], c["frames"])


def test_dancer_drifts_changes_size_and_stays_inside_margins():
    out = synthesize.dancer(1800, seed=4, margin=3)
    frames, poses = out["frames"][..., 0], out["poses"]
    assert frames.shape == (1800, 54, 96) and poses.shape == (1800, len(synthesize.POSE_NAMES))
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
    params, _ = synthesize.choreography(2, seed=0)
    body, radii = synthesize._body(0)
    wide = params.copy()
    wide[:, synthesize.POSE_NAMES.index("l_shoulder")] = np.pi / 2
    wide[:, synthesize.POSE_NAMES.index("r_shoulder")] = np.pi / 2
    narrow = wide.copy()
    wide[:, synthesize.POSE_NAMES.index("facing")] = 1.0
    narrow[:, synthesize.POSE_NAMES.index("facing")] = 0.3
    span = lambda p: np.ptp(synthesize._capsules(p, body)[..., 0], axis=(1, 2))
    np.testing.assert_allclose(span(narrow), 0.3 * span(wide), rtol=1e-6)


def test_three_channel_dancer_repeats_gray():
    out = synthesize.dancer(5, seed=0, channels=3)
    assert out["frames"].shape == (5, 54, 96, 3)
    assert (out["frames"] == out["frames"][..., :1]).all()


# ---- CLI


def test_cli_perlin_writes_vectors_and_preview(tmp_path, run_module):
    out, gif = tmp_path / "p.npz", tmp_path / "p.gif"
    r = run_module("tf_dance.synthesize", "--kind=perlin", "--frames=120", "--seed=5", "--dim=6",
                   f"--out={out}", f"--video={gif}", "--noprogress")
    assert r.returncode == 0, r.stderr
    vectors = data.load_latents(str(out), dim=6)
    np.testing.assert_array_equal(vectors, synthesize.perlin_vectors(120, seed=5, dim=6))
    with np.load(out, allow_pickle=False) as z:
        assert float(z["fps"]) == 24.0
    from PIL import Image
    with Image.open(gif) as im:
        assert im.n_frames == 120 and im.size == (96, 54)


def test_cli_dancer_dataset_has_poses_and_moves(tmp_path, run_module):
    out = tmp_path / "d.npz"
    r = run_module("tf_dance.synthesize", "--frames=30", "--seed=2", "--fps=30", "--width=64",
                   "--height=36", "--channels=3", f"--out={out}", "--noprogress")
    assert r.returncode == 0, r.stderr
    frames, fps, extras = data.load_dataset(str(out), 36, 64, 3)
    assert fps == 30.0 and len(frames) == 30
    expected = synthesize.dancer(30, seed=2, fps=30.0, height=36, width=64, channels=3)
    np.testing.assert_array_equal(frames, expected["frames"])
    assert extras["poses"].dtype == np.float32 and extras["poses"].shape == (30, 15)
    assert extras["moves"].shape == (30,)
    assert list(extras["pose_names"]) == list(synthesize.POSE_NAMES)
    assert list(extras["move_names"]) == list(synthesize.MOVES)


@pytest.mark.parametrize("args, message", [
    (["--frames=0"], "--frames"),
    (["--kind=robot"], "--kind"),
    (["--fps=0"], "--fps"),
    (["--out=OUT.txt"], "--out must end in .npz"),
    (["--video=OUT.avi"], "--video must end in .mp4 or .gif"),
    (["--margin=20"], "--margin"),
    ([], "--out is required"),
])
def test_cli_bad_flags_fail_cleanly(tmp_path, run_module, fails_cleanly, args, message):
    out = tmp_path / "x.npz"
    args = [a.replace("OUT", str(tmp_path / "x")) for a in args]
    if not any(a.startswith("--out") for a in args) and message != "--out is required":
        args.append(f"--out={out}")
    fails_cleanly(run_module("tf_dance.synthesize", "--frames=10", *args), message)
    assert os.listdir(tmp_path) == []


def test_cli_unwritable_output_fails_cleanly(tmp_path, run_module):
    (tmp_path / "taken.npz").mkdir()
    r = run_module("tf_dance.synthesize", "--frames=5", f"--out={tmp_path / 'taken.npz'}",
                   "--noprogress")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "cannot write" in r.stderr.strip().splitlines()[-1]
    assert os.listdir(tmp_path) == ["taken.npz"] and os.listdir(tmp_path / "taken.npz") == []
