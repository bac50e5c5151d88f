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
    (["--fps=1e-300"], "--fps"),
    (["--fps=1e39"], "--fps"),
    (["--kind=perlin", "--fps=1e39"], "--fps"),
    (["--kind=perlin", "--rate=1e300"], "--rate"),
    (["--clips=0"], "--clips"),
    (["--kind=perlin", "--clips=2"], "--clips applies to --kind=dancer only"),
    (["--clips=3"], "too few for 3 clips"),
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


def test_cli_footage_writes_clips(tmp_path, run_module):
    out = tmp_path / "f.npz"
    r = run_module("tf_dance.synthesize", "--clips=3", "--fps=10", "--seed=4", f"--out={out}",
                   "--noprogress")
    assert r.returncode == 0, r.stderr
    assert "1500 frames" in r.stdout and "in 3 clips" in r.stdout, "500 frames per clip by default"
    frames, fps, extras = data.load_dataset(str(out))
    expected = dancer.footage(1500, 3, seed=4, fps=10.0)
    np.testing.assert_array_equal(frames, expected["frames"])
    np.testing.assert_array_equal(extras["clips"], expected["clips"])
    assert len(data.clip_bounds(extras["clips"])) == 3
    assert list(extras["clip_names"]) == ["clip0", "clip1", "clip2"]
    assert extras["poses"].shape == (1500, 15) and fps == 10.0


def test_cli_one_clip_is_todays_dancer(tmp_path, run_module):
    plain, one = tmp_path / "plain.npz", tmp_path / "one.npz"
    for path, extra in ((plain, []), (one, ["--clips=1"])):
        r = run_module("tf_dance.synthesize", "--frames=40", "--seed=9", f"--out={path}",
                       "--noprogress", *extra)
        assert r.returncode == 0, r.stderr
    assert plain.read_bytes() == one.read_bytes()
    with np.load(one, allow_pickle=False) as z:
        assert "clips" not in z.files
        np.testing.assert_array_equal(z["frames"], dancer.dancer(40, seed=9)["frames"])


@pytest.mark.parametrize("kind", ["dancer", "perlin"])
def test_cli_failed_preview_leaves_no_dataset(tmp_path, run_module, fails_cleanly, kind):
    (tmp_path / "taken.mp4").mkdir()
    (tmp_path / "file").write_text("a file where a folder must go")
    for preview, message in ((tmp_path / "taken.mp4", "taken.mp4"),
                             (tmp_path / "file" / "p.gif", "cannot write")):
        out = tmp_path / "x.npz"
        fails_cleanly(run_module("tf_dance.synthesize", f"--kind={kind}", "--frames=5",
                                 f"--out={out}", f"--video={preview}", "--noprogress"), message)
        assert sorted(os.listdir(tmp_path)) == ["file", "taken.mp4"]
        assert os.listdir(tmp_path / "taken.mp4") == []
