import os

import numpy as np
import pytest

from tf_dance import dancer, data, perlin


def test_cli_perlin_writes_vectors_and_preview(tmp_path, run_module):
    out, gif = tmp_path / "p.npz", tmp_path / "p.gif"
    r = run_module("tf_dance.synthesize", "--kind=perlin", "--frames=120", "--seed=5", "--dim=6",
                   f"--out={out}", f"--video={gif}", "--noprogress")
    assert r.returncode == 0, r.stderr
    vectors = data.load_latents(str(out), dim=6)
    np.testing.assert_array_equal(vectors, perlin.perlin_vectors(120, seed=5, dim=6))
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
    expected = dancer.dancer(30, seed=2, fps=30.0, height=36, width=64, channels=3)
    np.testing.assert_array_equal(frames, expected["frames"])
    assert extras["poses"].dtype == np.float32 and extras["poses"].shape == (30, 15)
    assert extras["moves"].shape == (30,)
    assert list(extras["pose_names"]) == list(dancer.POSE_NAMES)
    assert list(extras["move_names"]) == list(dancer.MOVES)


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
