import os
import struct
import subprocess

import numpy as np
import pytest

from tf_dance import cli, data, video


def _iou(a, b, threshold=128):
    a, b = a >= threshold, b >= threshold
    return (a & b).sum((1, 2, 3)) / np.maximum((a | b).sum((1, 2, 3)), 1)


@pytest.fixture(scope="module")
def wide_video(tmp_path_factory):
    """192x54 frames: black left quarter, white middle half (gray stripe on top), black right."""
    frames = np.zeros((10, 54, 192, 1), np.uint8)
    frames[:, :, 48:144] = 255
    frames[:, :6, 48:144] = 100
    path = str(tmp_path_factory.mktemp("wide") / "wide.mp4")
    return video.write_video(path, frames, 10)


def test_round_trip_synthesize_video_then_prepare_recovers_frames(tmp_path, run_module):
    npz, mp4, out = tmp_path / "d.npz", tmp_path / "d.mp4", tmp_path / "p.npz"
    r = run_module("tf_dance.synthesize", "--kind=dancer", "--frames=240", "--seed=11",
                   f"--out={npz}", f"--video={mp4}")
    assert r.returncode == 0, r.stderr
    r = run_module("tf_dance.prepare_video", f"--video={mp4}", f"--out={out}")
    assert r.returncode == 0, r.stderr
    assert "240 frames" in r.stdout
    original, fps0, _ = data.load_dataset(str(npz))
    frames, fps, extras = data.load_dataset(str(out), data.HEIGHT, data.WIDTH, 1)
    assert fps == fps0 == 24.0 and frames.shape == original.shape
    assert _iou(frames, original).min() >= 0.95
    assert str(extras["source"]) == "d.mp4"
    assert not extras["clips"].any() and "clip_names" not in extras


def test_cli_passes_every_flag(tmp_path, run_module, wide_video):
    out = tmp_path / "p.npz"
    r = run_module("tf_dance.prepare_video", f"--video={wide_video}", f"--out={out}", "--fps=5",
                   "--width=32", "--height=24", "--channels=3", "--fit=pad", "--crop=40,0,112,54",
                   "--threshold=128", "--invert", "--start=0.2", "--end=0.9", "--max_frames=3",
                   "--noprogress")
    assert r.returncode == 0, r.stderr
    frames, fps, _ = data.load_dataset(str(out), 24, 32, 3)
    assert fps == 5.0 and len(frames) == 3
    assert set(np.unique(frames)) <= {0, 255}
    # Inverted, the white middle is black and the black edges white; pad bars stay black.
    assert frames[:, 12, 16].max() == 0 and frames[:, 12, 0].min() == 255
    assert frames[:, :4].max() == 0 and frames[:, -4:].max() == 0


def test_fps_resampling_start_end_and_max_frames(tiny_dancer, tiny_video):
    original = tiny_dancer["frames"]
    frames, fps = video.read_video(tiny_video, fps=12, progress=False)
    assert fps == 12.0 and len(frames) == 120
    assert _iou(frames, original[::2]).min() >= 0.9
    frames, _ = video.read_video(tiny_video, start=2.0, end=4.0, progress=False)
    assert len(frames) == 48 and _iou(frames, original[48:96]).min() >= 0.9
    frames, _ = video.read_video(tiny_video, start=1.0, max_frames=5, progress=False)
    assert len(frames) == 5 and _iou(frames, original[24:29]).min() >= 0.9


def test_size_channels_threshold_and_invert(tiny_dancer, tiny_video):
    frames, _ = video.read_video(tiny_video, width=48, height=28, channels=3, progress=False)
    assert frames.shape == (240, 28, 48, 3)
    assert np.abs(frames.astype(int) - frames[..., :1]).max() <= 8
    binary, _ = video.read_video(tiny_video, threshold=128, progress=False)
    assert set(np.unique(binary)) == {0, 255}
    assert _iou(binary, tiny_dancer["frames"]).min() >= 0.95
    auto, _ = video.read_video(tiny_video, threshold="auto", progress=False)
    assert set(np.unique(auto)) == {0, 255} and _iou(auto, binary).min() >= 0.9
    inverted, _ = video.read_video(tiny_video, invert=True, progress=False)
    plain, _ = video.read_video(tiny_video, progress=False)
    assert np.abs(inverted.astype(int) + plain - 255).max() <= 2


def test_fit_modes_and_crop_box(wide_video):
    stretch, _ = video.read_video(wide_video, progress=False)
    assert stretch[:, 30, :20].max() < 20 and stretch[:, 30, 30:66].min() > 235
    assert stretch[:, 30, 78:].max() < 20
    crop, _ = video.read_video(wide_video, fit="crop", progress=False)
    assert crop[:, 10:].min() > 235, "the centred 96 columns are all white"
    pad, _ = video.read_video(wide_video, fit="pad", progress=False)
    assert pad[:, :12].max() == 0 and pad[:, -12:].max() == 0
    assert pad[:, 27, 30:66].min() > 235
    boxed, _ = video.read_video(wide_video, crop="48,6,96,48", progress=False)
    assert boxed.min() > 235
    with pytest.raises(cli.UserError, match="outside"):
        video.read_video(wide_video, crop="100,0,100,54", progress=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(fps=0), "fps"), (dict(width=4), "width"), (dict(channels=2), "channels"),
    (dict(fit="zoom"), "fit"), (dict(start=-1), "start"), (dict(start=3, end=2), "end"),
    (dict(max_frames=0), "max_frames"), (dict(crop="1,2"), "X,Y,W,H"),
    (dict(threshold=0), "threshold"),
])
def test_read_video_rejects_bad_arguments(tiny_video, kwargs, message):
    with pytest.raises(cli.UserError, match=message):
        video.read_video(tiny_video, progress=False, **kwargs)


def test_frames_too_big_for_memory_are_refused_before_decoding(tiny_video, monkeypatch):
    """8192x8192 RGB frames of a 10 s clip (96.6 GB) used to end in a MemoryError: now the size is checked
    against the memory available before ffmpeg starts, and a clip whose probed duration is unknown (or lies)
    is stopped once what it decoded would not fit."""
    monkeypatch.setattr(data, "available_memory", lambda: 2_000_000)
    probed = video.probe(tiny_video)
    monkeypatch.setattr(video, "probe", lambda path: probed)

    def no_decoding(*args, **kwargs):
        raise AssertionError("ffmpeg was started before the size was checked")
    with monkeypatch.context() as m:
        m.setattr(video.subprocess, "Popen", no_decoding)
        with pytest.raises(cli.UserError, match=r"240 frames of 8192x8192x3 would take 90.0 GiB, more than the 1.9 MiB "
                                                r"of memory available; lower --fps"):
            video.read_video(tiny_video, width=8192, height=8192, channels=3, progress=False)
        with pytest.raises(cli.UserError, match="2 videos: 480 frames of 96x54x1 would take 4.7 MiB"):
            video.read_videos([tiny_video, tiny_video], progress=False)
    monkeypatch.setattr(video, "probe", lambda path: dict(probed, duration=None))
    with pytest.raises(cli.UserError, match="frames of 96x54x1 would take .* more than the 1.9 MiB"):
        video.read_video(tiny_video, progress=False)  # 240 frames: 2.4 MiB held twice


# ---- several videos, one dataset


@pytest.fixture(scope="module")
def two_videos(two_clips, tmp_path_factory):
    """A folder with a.mp4 (the big dancer, 24 fps), b.mp4 (the small one, 12 fps) and notes.txt."""
    folder = tmp_path_factory.mktemp("clips")
    (a0, a1), (b0, b1) = data.clip_bounds(two_clips["clips"])
    frames = two_clips["frames"]
    video.write_video(str(folder / "a.mp4"), frames[a0:a1], 24)
    video.write_video(str(folder / "b.mp4"), frames[b0:b0 + 40], 12)
    (folder / "notes.txt").write_text("not a video, and not picked up from the folder\n")
    return dict(folder=str(folder), a=str(folder / "a.mp4"), b=str(folder / "b.mp4"), na=a1 - a0)


def test_several_videos_become_one_dataset_with_clips(tmp_path, run_module, two_videos):
    out = tmp_path / "both.npz"
    r = run_module("tf_dance.prepare_video", f"--video={two_videos['a']}",
                   f"--video={two_videos['b']}", f"--out={out}", "--noprogress")
    assert r.returncode == 0, r.stderr
    assert "in 2 clips" in r.stdout.splitlines()[-1]
    frames, fps, extras = data.load_dataset(str(out))
    assert fps == 24.0, "the first clip's rate"
    a, _ = video.read_video(two_videos["a"], progress=False)
    b, _ = video.read_video(two_videos["b"], fps=24, progress=False)
    assert len(a) == two_videos["na"] and len(b) == 80, "b resampled from 12 to 24 fps"
    np.testing.assert_array_equal(frames, np.concatenate([a, b]))
    assert data.clip_bounds(extras["clips"]) == [(0, len(a)), (len(a), len(a) + 80)]
    assert list(extras["clip_names"]) == ["a.mp4", "b.mp4"]
    area = [(clip >= 128).sum((1, 2, 3)).mean() for clip in (a, b)]
    assert area[0] > 1.5 * area[1], "the two clips show visibly different dancers"


def test_folder_glob_and_comma_list_name_the_same_clips(tmp_path, run_module, two_videos):
    expected = [two_videos["a"], two_videos["b"]]
    folder = two_videos["folder"]
    assert video.find_videos([folder]) == expected
    assert video.find_videos([os.path.join(folder, "*.mp4")]) == expected
    assert video.find_videos([f"{two_videos['a']},{two_videos['b']}"]) == expected
    assert video.find_videos([two_videos["b"], two_videos["a"]]) == expected[::-1]
    out = tmp_path / "folder.npz"
    r = run_module("tf_dance.prepare_video", f"--video={folder}", "--fps=6", f"--out={out}",
                   "--noprogress")
    assert r.returncode == 0, r.stderr
    frames, fps, extras = data.load_dataset(str(out))
    lengths = [end - start for start, end in data.clip_bounds(extras["clips"])]
    assert fps == 6.0 and len(lengths) == 2 and len(frames) == sum(lengths)
    assert abs(lengths[0] - two_videos["na"] / 4) <= 1 and abs(lengths[1] - 20) <= 1


@pytest.mark.parametrize("specs, message", [
    (["GOOD", "FOLDER/nothing*.mp4"], "no file matches"),
    (["EMPTY"], "no video files"),
    (["GOOD,FOLDER/notes.txt"], "is not a readable video"),
    (["GOOD", "FOLDER/missing.mp4"], "video not found"),
    (["GOOD", "GOOD"], "given twice"),
    (["FOLDER/*"], "is not a readable video"),
])
def test_bad_clip_lists_fail_cleanly(tmp_path, run_module, fails_cleanly, two_videos, specs,
                                     message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no videos here\n")
    args = [f"--video={s.replace('GOOD', two_videos['a']).replace('FOLDER', two_videos['folder'])}"
            .replace("EMPTY", str(tmp_path / "empty")) for s in specs]
    fails_cleanly(run_module("tf_dance.prepare_video", "--noprogress", *args,
                             f"--out={tmp_path / 'out.npz'}"), message)
    assert sorted(os.listdir(tmp_path)) == ["empty"]


# ---- every bad input: one message, no traceback, nothing written


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, tiny_video):
    folder = tmp_path_factory.mktemp("bad")
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n")
    audio = folder / "tone.m4a"
    subprocess.run([video._ffmpeg(), "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                    "sine=duration=1", "-c:a", "aac", str(audio)], check=True)
    raw = bytearray(open(tiny_video, "rb").read())
    at = raw.find(b"mdat")
    size = struct.unpack(">I", raw[at - 4:at])[0]
    raw[at + 20:at - 4 + size] = np.random.default_rng(0).integers(
        0, 256, size - 24, dtype=np.uint8).tobytes()
    garbled = folder / "garbled.mp4"
    garbled.write_bytes(bytes(raw))
    return dict(missing=str(folder / "missing.mp4"), text=str(text), audio=str(audio),
                garbled=str(garbled), good=tiny_video)


@pytest.mark.parametrize("video_key, args, message", [
    ("missing", [], "video not found"),
    ("text", [], "is not a readable video"),
    ("audio", [], "has no video stream"),
    ("good", ["--start=60"], "no frames could be decoded"),
    ("garbled", [], "no frames could be decoded"),
    ("good", ["--crop=0,0,500,20"], "lies outside"),
    ("good", ["--width=0"], "--width"),
    ("good", ["--fit=zoom"], "--fit"),
    ("good", ["--crop=1,2,3"], "X,Y,W,H"),
    ("good", ["--threshold=300"], "1..255"),
    ("good", ["--start=5", "--end=2"], "--end must be after --start"),
    ("good", ["--fps=-2"], "--fps must be in 0.1..1000"),
    ("good", ["--fps=100000"], "--fps must be in 0.1..1000"),
    ("good", ["--channels=2"], "--channels"),
    ("good", ["--out=NOEXT"], "--out must end in .npz"),
    (None, [], "--video is required"),
])
def test_bad_inputs_fail_cleanly(tmp_path, run_module, fails_cleanly, bad_inputs, video_key, args, message):
    out = tmp_path / "out.npz"
    args = [a.replace("NOEXT", str(tmp_path / "out")) for a in args]
    if not any(a.startswith("--out") for a in args):
        args.append(f"--out={out}")
    if video_key:
        args.append(f"--video={bad_inputs[video_key]}")
    fails_cleanly(run_module("tf_dance.prepare_video", "--noprogress", *args), message)
    assert os.listdir(tmp_path) == []


def test_inverted_footage_is_refused_with_the_fix_and_the_measures_are_stored(tmp_path, run_module, fails_cleanly,
                                                                               tiny_dancer):
    from PIL import Image
    inverted = video.write_video(str(tmp_path / "inv.mp4"), 255 - tiny_dancer["frames"][:48], 24.0)
    out, preview = tmp_path / "out.npz", tmp_path / "preview.png"
    fails_cleanly(run_module("tf_dance.prepare_video", f"--video={inverted}", f"--out={out}", "--noprogress",
                             f"--preview={preview}"), "pass --invert for a dark dancer on a light ground")
    assert sorted(os.listdir(tmp_path)) == ["inv.mp4"]

    r = run_module("tf_dance.prepare_video", f"--video={inverted}", f"--out={out}", "--noprogress", "--invert",
                   f"--preview={preview}")
    assert r.returncode == 0, r.stderr
    assert "frames without a dancer: 0.0%" in r.stdout and f"preview: {preview}" in r.stdout
    assert "48 frames 96x54x1 (2.0 s of video at 24 fps) in 1 clip;" in r.stdout
    frames, _, extras = data.load_dataset(str(out))
    share = float(extras["foreground_share"])
    assert 0.01 < share < 0.2 and abs(share - (frames >= 128).mean()) < 1e-6 and float(extras["empty_share"]) == 0
    sheet = np.asarray(Image.open(preview))  # white dancers on black, under a title
    assert sheet.shape[1] == 8 * 192 + 9 * 2 and (sheet >= 128).mean() < 0.2
    assert (sheet[:16] >= 128).any() and not (sheet[:16, 1000:] >= 128).any()  # the title's text, left

    kept = tmp_path / "kept.npz"
    r = run_module("tf_dance.prepare_video", f"--video={inverted}", f"--out={kept}", "--noprogress",
                   "--nocheck_footage")
    assert r.returncode == 0, r.stderr
    assert float(data.load_dataset(str(kept))[2]["foreground_share"]) > 0.8


def test_footage_checks_name_the_likely_fix():
    assert video.footage_measures(np.zeros((4, 54, 96, 1), np.uint8)) == (0.0, 1.0)
    video.check_footage(0.05, 0.1)
    with pytest.raises(cli.UserError, match="drop --invert"):
        video.check_footage(0.9, 0.0, inverted=True)
    with pytest.raises(cli.UserError, match=r"60.0% of the frames show no dancer .* lower --threshold"):
        video.check_footage(0.01, 0.6)
