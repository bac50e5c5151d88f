import os

import numpy as np
import pytest

from tf_dance import cli, data


def _frames(n=5, h=data.HEIGHT, w=data.WIDTH, c=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def test_round_trip_keeps_frames_fps_and_extras(tmp_path):
    frames = _frames(c=3)
    poses = np.ones((5, 4), np.float32)
    path = data.save_dataset(str(tmp_path / "d.npz"), frames, 12.5, poses=poses)
    got, fps, extras = data.load_dataset(path, height=54, width=96, channels=3)
    np.testing.assert_array_equal(got, frames)
    assert fps == 12.5
    assert list(extras) == ["poses", "clips"] and extras["poses"].shape == (5, 4)
    np.testing.assert_array_equal(extras["clips"], np.zeros(5, np.int32))
    assert os.listdir(tmp_path) == ["d.npz"]


def test_tiny_dataset_fixture_loads(tiny_dataset):
    frames, fps, extras = data.load_dataset(tiny_dataset, data.HEIGHT, data.WIDTH, 1)
    assert frames.shape == (240, 54, 96, 1) and fps == 24.0
    assert extras["poses"].shape[0] == extras["moves"].shape[0] == 240


@pytest.mark.parametrize("frames, message", [
    (np.zeros((3, 54, 96, 1), np.float32), "uint8"),
    (np.zeros((3, 54, 96), np.uint8), "[N, H, W, C]"),
    (np.zeros((0, 54, 96, 1), np.uint8), "no frames"),
    (np.zeros((3, 54, 96, 2), np.uint8), "1 or 3 channels"),
    (np.zeros((3, 4, 96, 1), np.uint8), "too small"),
])
def test_save_rejects_bad_frames_and_writes_nothing(tmp_path, frames, message):
    with pytest.raises(cli.UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        data.save_dataset(str(tmp_path / "d.npz"), frames, 24)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fps", [0, -3, float("nan"), float("inf")])
def test_save_rejects_bad_fps(tmp_path, fps):
    with pytest.raises(cli.UserError, match="fps"):
        data.save_dataset(str(tmp_path / "d.npz"), _frames(), fps)
    assert os.listdir(tmp_path) == []


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("arrays, message", [
    (dict(fps=np.float32(24)), "no 'frames'"),
    (dict(frames=np.zeros((2, 54, 96, 1), np.int16), fps=np.float32(24)), "uint8"),
    (dict(frames=np.zeros((54, 96), np.uint8), fps=np.float32(24)), "shape"),
    (dict(frames=np.zeros((0, 54, 96, 1), np.uint8), fps=np.float32(24)), "no frames"),
    (dict(frames=np.zeros((2, 54, 96, 1), np.uint8)), "fps"),
    (dict(frames=np.zeros((2, 54, 96, 1), np.uint8), fps=np.float32(-1)), "fps"),
])
def test_load_rejects_bad_contents(tmp_path, arrays, message):
    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(cli.UserError, match=message):
        data.load_dataset(path)


def test_load_refuses_pickled_objects(tmp_path):
    path = _write_npz(tmp_path / "obj.npz", frames=np.array([{"evil": 1}], dtype=object),
                      fps=np.float32(24))
    with pytest.raises(cli.UserError, match="not a readable"):
        data.load_dataset(path)


def test_load_rejects_missing_and_non_npz_files(tmp_path):
    with pytest.raises(cli.UserError, match="not found"):
        data.load_dataset(str(tmp_path / "nope.npz"))
    with pytest.raises(cli.UserError, match="no dataset"):
        data.load_dataset("")
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(cli.UserError, match="not a readable"):
        data.load_dataset(str(text))
    with pytest.raises(cli.UserError, match="not a file"):
        data.load_dataset(str(tmp_path))


def test_load_checks_requested_size_and_channels(tmp_path):
    path = data.save_dataset(str(tmp_path / "d.npz"), _frames(h=40, w=64), 10)
    with pytest.raises(cli.UserError, match="64x40 frames but 96x54"):
        data.load_dataset(path, height=54, width=96)
    with pytest.raises(cli.UserError, match="1-channel frames but 3"):
        data.load_dataset(path, channels=3)
    assert data.load_dataset(path, height=40, width=64, channels=1)[0].shape == (5, 40, 64, 1)


def test_latents_from_npy_and_perlin_npz(tmp_path):
    z = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float64)
    npy = data.save_array(str(tmp_path / "z.npy"), z)
    got = data.load_latents(npy, dim=3)
    assert got.dtype == np.float32 and got.shape == (7, 3)
    npz = _write_npz(tmp_path / "p.npz", vectors=z[:, :2].astype(np.float32), fps=np.float32(24))
    assert data.load_latents(npz).shape == (7, 2)


@pytest.mark.parametrize("array, dim, message", [
    (np.zeros((4, 3), np.float32), 5, "3-d but the model needs 5-d"),
    (np.zeros((4,), np.float32), None, "non-empty"),
    (np.zeros((0, 3), np.float32), None, "non-empty"),
    (np.zeros((4, 3), np.int32), None, "floating point"),
    (np.array([[0.0, np.nan], [1.0, 2.0], [np.inf, 0.0]], np.float32), None, "2 latent vectors"),
])
def test_latents_validation(tmp_path, array, dim, message):
    path = data.save_array(str(tmp_path / "z.npy"), array)
    with pytest.raises(cli.UserError, match=message):
        data.load_latents(path, dim=dim)


def test_latents_npz_without_known_key(tmp_path):
    path = _write_npz(tmp_path / "x.npz", other=np.zeros((2, 2), np.float32))
    with pytest.raises(cli.UserError, match="neither 'latents' nor 'vectors'"):
        data.load_latents(path)


# ---- clips: several videos in one dataset


def test_clips_round_trip_with_names(tmp_path):
    clips = np.array([0, 0, 1, 1, 1], np.int64)
    path = data.save_dataset(str(tmp_path / "d.npz"), _frames(), 24, clips=clips,
                             clip_names=np.array(["a.mp4", "b.mov"]))
    _, _, extras = data.load_dataset(path)
    assert extras["clips"].dtype == np.int32
    np.testing.assert_array_equal(extras["clips"], clips)
    assert extras["clip_names"].dtype.kind == "U" and list(extras["clip_names"]) == ["a.mp4", "b.mov"]
    assert data.clip_bounds(extras["clips"]) == [(0, 2), (2, 5)]


def test_two_clip_fixture_has_a_cut_between_different_dancers(two_clip_dataset):
    frames, _, extras = data.load_dataset(two_clip_dataset)
    bounds = data.clip_bounds(extras["clips"])
    assert len(bounds) == 2 and bounds[0][0] == 0 and bounds[-1][1] == len(frames)
    area = [(frames[a:b] >= 128).sum((1, 2, 3)).mean() for a, b in bounds]
    assert max(area) > 1.5 * min(area)


def test_clip_bounds():
    assert data.clip_bounds(np.zeros(4, np.int32)) == [(0, 4)]
    assert data.clip_bounds(np.array([0, 1, 1, 2])) == [(0, 1), (1, 3), (3, 4)]
    assert data.clip_bounds(np.array([], np.int32)) == []


def test_old_dataset_without_clips_is_one_clip(tmp_path):
    path = _write_npz(tmp_path / "old.npz", frames=_frames(n=7), fps=np.float32(10))
    _, _, extras = data.load_dataset(path)
    assert extras["clips"].dtype == np.int32 and extras["clips"].shape == (7,)
    assert not extras["clips"].any() and "clip_names" not in extras


@pytest.mark.parametrize("clips, names, message", [
    ([0, 0, 1, 1], None, "5 integers"),
    ([1, 1, 1, 2, 2], None, "start at 0"),
    ([0, 0, 2, 2, 2], None, "go up by 1"),
    ([0, 1, 0, 1, 1], None, "go up by 1"),
    ([0.0, 0, 0, 0, 0], None, "integers"),
    ([0, 0, 1, 1, 1], ["only one"], "2 strings"),
    (None, ["a"], "without clips"),
])
def test_bad_clips_are_refused_on_save_and_load(tmp_path, clips, names, message):
    names = None if names is None else np.array(names)
    with pytest.raises(cli.UserError, match=message):
        data.save_dataset(str(tmp_path / "d.npz"), _frames(), 24, clips=clips, clip_names=names)
    assert os.listdir(tmp_path) == []
    if clips is not None:
        extra = {} if names is None else dict(clip_names=names)
        path = _write_npz(tmp_path / "bad.npz", frames=_frames(), fps=np.float32(24),
                          clips=np.array(clips), **extra)
        with pytest.raises(cli.UserError, match=message):
            data.load_dataset(path)


def test_load_refuses_object_clip_names(tmp_path):
    path = _write_npz(tmp_path / "obj.npz", frames=_frames(n=2), fps=np.float32(24),
                      clips=np.zeros(2, np.int32), clip_names=np.array(["a"], dtype=object))
    with pytest.raises(cli.UserError, match="not a readable"):
        data.load_dataset(path)


def test_latent_clips_beside_the_latents(tmp_path):
    latents = str(tmp_path / "z.npy")
    assert data.latent_clips_path(latents) == str(tmp_path / "z_clips.npy")
    np.testing.assert_array_equal(data.load_latent_clips(latents, 4), np.zeros(4, np.int32))
    np.save(tmp_path / "z_clips.npy", np.array([0, 0, 1, 1], np.int32))
    got = data.load_latent_clips(latents, 4)
    assert got.dtype == np.int32 and list(got) == [0, 0, 1, 1]
    with pytest.raises(cli.UserError, match="4 clip ids but .* has 5 latents"):
        data.load_latent_clips(latents, 5)
    np.save(tmp_path / "z_clips.npy", np.array([0, 2, 2, 2], np.int32))
    with pytest.raises(cli.UserError, match="go up by 1"):
        data.load_latent_clips(latents, 4)
    (tmp_path / "z_clips.npy").write_text("garbage")
    with pytest.raises(cli.UserError, match="not a readable"):
        data.load_latent_clips(latents, 4)


def test_fps_stored_as_an_array(tmp_path):
    frames = _frames()
    path = _write_npz(tmp_path / "one.npz", frames=frames, fps=np.array([25.0]))
    assert data.load_dataset(path)[1] == 25.0
    path = _write_npz(tmp_path / "two.npz", frames=frames, fps=np.array([24.0, 25.0]))
    with pytest.raises(cli.UserError, match="'fps' must be one number"):
        data.load_dataset(path)


def _npy_bytes(shape, dtype, data_bytes=b""):
    """A .npy file whose header claims `shape` but which holds only `data_bytes`."""
    import io
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                  "shape": shape})
    return header.getvalue() + data_bytes


def _no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("np.load was called before the sizes were checked")
    monkeypatch.setattr(np, "load", refuse)


def test_header_claiming_terabytes_is_refused_before_loading(tmp_path, monkeypatch):
    import zipfile
    huge = (600_000_000, 54, 96, 1)  # 2.9 TiB of uint8 frames
    npz = tmp_path / "huge.npz"
    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("frames.npy", _npy_bytes(huge, np.uint8, b"\0" * 1000))
        z.writestr("fps.npy", _npy_bytes((), np.float32, np.float32(24).tobytes()))
    npy = tmp_path / "huge.npy"
    npy.write_bytes(_npy_bytes((5_000_000_000, 128), np.float64))  # 4.7 TiB of latents
    _no_loading(monkeypatch)
    with pytest.raises(cli.UserError, match="TiB"):
        data.load_dataset(str(npz))
    with pytest.raises(cli.UserError, match="4.7 TiB"):
        data.load_latents(str(npy))


def test_zip_bomb_is_refused_before_inflating(tmp_path, monkeypatch):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, frames=np.zeros((2000, 54, 96, 1), np.uint8), fps=np.float32(24))
    assert path.stat().st_size < 100_000  # 10 MB of frames inflate from a few KB
    monkeypatch.setattr(data, "available_memory", lambda: 1_000_000)
    _no_loading(monkeypatch)
    with pytest.raises(cli.UserError, match=r"arrays of 9.9 MiB, more than the 976.6 KiB of memory available"):
        data.load_dataset(str(path))


def test_zip_bomb_in_an_entry_without_the_npy_suffix_is_counted(tmp_path, monkeypatch):
    """numpy loads an entry of any name (as an array, or as raw bytes): every entry counts, not only `*.npy`."""
    import zipfile
    for name, payload in [("junk", b"\0" * 10_000_000),
                          ("poses", _npy_bytes((10_000_000,), np.uint8, b"\0" * 10_000_000))]:
        path = tmp_path / f"{name}.npz"
        np.savez(path, frames=np.zeros((2, 54, 96, 1), np.uint8), fps=np.float32(24))
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(name, payload)
        assert path.stat().st_size < 100_000
        monkeypatch.setattr(data, "available_memory", lambda: 1_000_000)
        with monkeypatch.context() as m:
            _no_loading(m)
            with pytest.raises(cli.UserError, match=r"arrays of 9.5 MiB, more than the 976.6 KiB of memory"):
                data.load_dataset(str(path))


@pytest.mark.parametrize("fps", [1e-30, 0.05, 1001, 3e38])
def test_fps_outside_the_range_is_refused_on_save_and_load(tmp_path, fps):
    with pytest.raises(cli.UserError, match=r"fps must be in 0.1..1000"):
        data.save_dataset(str(tmp_path / "d.npz"), _frames(), fps)
    path = _write_npz(tmp_path / "bad.npz", frames=np.zeros((2, 54, 96, 1), np.uint8), fps=np.float32(fps))
    with pytest.raises(cli.UserError, match=r"bad.npz: fps must be in 0.1..1000"):
        data.load_dataset(path)


def test_huge_but_finite_latents_are_refused(tmp_path):
    """Latents of about 1e30 used to train a model on nothing (the standardised latents were all 0)."""
    path = str(tmp_path / "huge.npy")
    np.save(path, np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32) * 1e30)
    with pytest.raises(cli.UserError, match=r"huge.npy: latent values reach .*e\+30, beyond the 1e\+06 accepted"):
        data.load_latents(path)
    np.save(path, np.full((300, 8), 1e6, np.float32))
    assert data.load_latents(path).shape == (300, 8)


def test_latents_that_overflow_float32_are_named(tmp_path):
    path = str(tmp_path / "big.npy")
    np.save(path, np.full((300, 8), 1e39))
    with pytest.raises(cli.UserError, match="big.npy: latent values up to 1e[+]39 do not fit float32"):
        data.load_latents(path)
