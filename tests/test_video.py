import os

import numpy as np
import pytest
from PIL import Image

from tf_dance import cli, video


def _blocks(n=12, h=54, w=96, c=1):
    """Frames with a white square that moves right one block per frame."""
    frames = np.zeros((n, h, w, c), np.uint8)
    for i in range(n):
        x = (i * 6) % (w - 16)
        frames[i, 10:40, x:x + 16] = 255
    return frames


def test_video_round_trip_matches_frames(tmp_path, tiny_dancer, tiny_video):
    frames, fps = video.read_video(tiny_video, progress=False)
    assert fps == 24.0 and frames.shape == tiny_dancer["frames"].shape
    assert np.abs(frames.astype(int) - tiny_dancer["frames"]).mean() < 2.0
    info = video.probe(tiny_video)
    assert (info["width"], info["height"], info["fps"]) == (96, 54, 24.0)


def test_write_video_scales_and_pads_odd_sizes(tmp_path):
    frames = _blocks(n=6, h=27, w=35)
    path = video.write_video(str(tmp_path / "odd.mp4"), frames, 10, scale=3)
    info = video.probe(path)
    assert (info["width"], info["height"]) == (106, 82)
    back, fps = video.read_video(path, width=106, height=82, progress=False)
    assert fps == 10.0 and len(back) == 6
    up = np.repeat(np.repeat(frames, 3, 1), 3, 2)
    assert np.abs(back[:, :81, :105].astype(int) - up).mean() < 4.0
    assert back[:, 81:, :].max() < 30 and back[:, :, 105:].max() < 30
    assert os.listdir(tmp_path) == ["odd.mp4"]


def test_write_video_rgb_keeps_colours(tmp_path):
    frames = np.zeros((4, 54, 96, 3), np.uint8)
    frames[:, :, :48] = (200, 30, 30)
    frames[:, :, 48:] = (20, 20, 220)
    path = video.write_video(str(tmp_path / "rgb.mp4"), frames, 24)
    back, _ = video.read_video(path, channels=3, progress=False)
    assert np.abs(back[:, 10:44, 5:40].mean((0, 1, 2)) - (200, 30, 30)).max() < 12
    assert np.abs(back[:, 10:44, 56:90].mean((0, 1, 2)) - (20, 20, 220)).max() < 12


@pytest.mark.parametrize("frames, fps, scale, message", [
    (np.zeros((0, 54, 96, 1), np.uint8), 24, 1, "non-empty"),
    (np.zeros((3, 54, 96, 2), np.uint8), 24, 1, "non-empty"),
    (np.zeros((3, 54, 96, 1), np.int32), 24, 1, "uint8 or float"),
    (np.full((3, 54, 96, 1), np.nan, np.float32), 24, 1, "NaN"),
    (np.zeros((3, 54, 96, 1), np.uint8), 0, 1, "fps"),
    (np.zeros((3, 54, 96, 1), np.uint8), 24, 0, "scale"),
])
def test_writers_reject_bad_input_and_leave_nothing(tmp_path, frames, fps, scale, message):
    for writer, name in ((video.write_video, "v.mp4"), (video.write_gif, "g.gif")):
        with pytest.raises(cli.UserError, match=message):
            writer(str(tmp_path / name), frames, fps, scale=scale)
    assert os.listdir(tmp_path) == []


def test_float_frames_are_accepted():
    out = video.as_frames(np.array([[[0.0, 0.5, 1.2]]], np.float32))
    assert out.dtype == np.uint8 and out.shape == (1, 1, 3, 1)
    assert out.ravel().tolist() == [0, 128, 255]


def test_gif_loops_forever_at_the_frame_rate(tmp_path):
    frames = _blocks(n=8)
    path = video.write_gif(str(tmp_path / "a.gif"), frames, 10, scale=2)
    with Image.open(path) as im:
        assert im.n_frames == 8 and im.size == (192, 108)
        assert im.info["loop"] == 0 and im.info["duration"] == 100
        im.seek(3)
        got = np.asarray(im.convert("L"))
    np.testing.assert_array_equal(got, np.repeat(np.repeat(frames[3, ..., 0], 2, 0), 2, 1))


def test_contact_sheet_places_every_nth_frame(tmp_path):
    frames = _blocks(n=20)
    path = str(tmp_path / "sheet.png")
    sheet = video.contact_sheet(path, frames, every=4, columns=3, gap=2)
    assert sheet.shape == (2 * 54 + 3 * 2, 3 * 96 + 4 * 2, 1)
    for i, frame in enumerate(frames[::4]):
        r, c = divmod(i, 3)
        y, x = 2 + r * 56, 2 + c * 98
        np.testing.assert_array_equal(sheet[y:y + 54, x:x + 96], frame)
    assert (sheet[2 + 56:, 2 + 2 * 98:] == 64).all(), "unused cells stay background"
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im)[..., None], sheet)


def test_contact_sheet_labels(tmp_path):
    frames = _blocks(n=8, c=3)
    plain = video.contact_sheet(None, frames, every=2, columns=4, scale=2)
    per_frame = video.contact_sheet(None, frames, every=2, columns=4, scale=2,
                                    labels=[f"f{i}" for i in range(8)])
    per_tile = video.contact_sheet(None, frames, every=2, columns=4, scale=2,
                                   labels=["f0", "f2", "f4", "f6"])
    assert per_frame.shape == plain.shape == (108 + 2 * 2, 4 * 192 + 5 * 2, 3)
    assert not np.array_equal(per_frame, plain)
    np.testing.assert_array_equal(per_frame, per_tile)
    with pytest.raises(cli.UserError, match="3 labels for 4 tiles"):
        video.contact_sheet(None, frames, every=2, labels=["a", "b", "c"])


def test_otsu_splits_a_bimodal_histogram():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(40, 10, 5000), rng.normal(200, 10, 2000)])
    frames = np.clip(values, 0, 255).astype(np.uint8).reshape(1, 70, 100, 1)
    t = video.otsu_threshold(frames)
    assert 80 < t < 160
    binary = video.binarise(frames, "auto")
    assert set(np.unique(binary)) == {0, 255}
    assert abs((binary == 255).mean() - 2000 / 7000) < 0.01


def test_contact_sheet_title_sits_above_the_grid():
    frames = np.zeros((8, 54, 96, 1), np.uint8)
    plain = video.contact_sheet(None, frames, every=2, columns=4, scale=2)
    titled = video.contact_sheet(None, frames, every=2, columns=4, scale=2, title="a title")
    band = titled.shape[0] - plain.shape[0]
    assert band > 10 and titled.shape[1:] == plain.shape[1:]
    np.testing.assert_array_equal(titled[band:], plain)
    assert titled[:band].max() == 255  # white text on black
