"""`report`: what evaluate writes about a dance (the measures of the second half from decoded frames, the
memory a measurement needs, the markdown); the script itself: test_evaluate.py."""

import json

import numpy as np
import pytest

from tf_dance import cli, data, demo, report

from conftest import dance_latents

FPS = 24.0
DIM = 16


def test_a_dance_too_long_to_measure_is_refused_before_it_is_made(monkeypatch):
    monkeypatch.setattr(data, "available_memory", lambda: 4 << 30)
    with pytest.raises(cli.UserError, match=r"measuring 1 x 10000000 frames of 128-d latents would take 85.8 GiB, "
                                            r"more than the 4.0 GiB of memory available; lower --frames"):
        report.check_memory(1, 10_000_000, 128)
    report.check_memory(2, 60_000, 128)


def box_decoder(latents):
    """A stand-in decoder: a white box whose centre column is latent 0 and height latent 1."""
    z = np.asarray(latents)
    frames = np.zeros((len(z), 54, 96, 1), np.uint8)
    for frame, (x, size) in zip(frames, z[:, :2]):
        height, centre = int(round(size * 54)), int(round(x * 96))
        frame[52 - height:52, max(0, centre - 5):centre + 5] = 255
    return frames


def travelling_latents(frames):
    """Latents whose first two values walk the box across the stage and change its size."""
    t = np.arange(frames) / FPS
    stage = np.stack([0.5 + 0.35 * np.sin(2 * np.pi * t / 20.0), 0.6 + 0.2 * np.sin(2 * np.pi * t / 7.0)], 1)
    return np.concatenate([stage, dance_latents(frames, seed=0, dim=DIM)[:, 2:]], axis=1).astype(np.float32)


def test_stage_coverage_and_screen_motion_of_the_second_half(tmp_path):
    train = travelling_latents(3000)
    stuck = train[:1200].copy()
    stuck[:, 0] = 0.5  # the same moves and sizes, never leaving the middle of the stage
    gone = train[:1200].copy()
    gone[600:, 0] = np.where(np.arange(600) // 50 % 2 == 0, 1.5, gone[600:, 0])  # off the right edge half the time
    result = report.evaluate_dance(np.stack([train[:1200], stuck, gone]), train, FPS, str(tmp_path / "eval"),
                                   progress=False, decode=box_decoder)
    replay, still, wandered = result["dancers"]
    assert not replay["verdicts"]["out_of_picture"] and not still["verdicts"]["out_of_picture"]
    assert wandered["verdicts"]["out_of_picture"] and wandered["second_half"]["stage"]["empty_share"] > 0.3
    assert replay["second_half"]["stage"]["stage_coverage"] >= 0.8
    assert 0.5 <= replay["second_half"]["screen"]["screen_motion_ratio"] <= 2.0
    assert replay["goals"]["stage_coverage"]["passed"] and replay["goals"]["on_screen_motion"]["passed"]
    assert not replay["verdicts"]["stuck_in_place"]
    assert still["second_half"]["stage"]["positions_visited"] == 1
    assert still["verdicts"]["stuck_in_place"] and still["goals"]["stage_coverage"]["passed"] is False
    assert result["verdicts"]["stuck_in_place"] and result["goals"]["stage_coverage"]["passed"] is False
    text = (tmp_path / "eval" / "report.md").read_text()
    assert "| stage coverage (x data) |" in text and "**NO**" in text and "stuck in place?" in text


def test_stage_range_of_the_second_half(tmp_path):
    train = travelling_latents(3000)
    middle = train[:2400].copy()
    middle[:, 0] = 0.5 + 0.7 * (middle[:, 0] - 0.5)  # the same moves, never as far out as the data goes
    result = report.evaluate_dance(np.stack([train[:2400], middle]), train, FPS, str(tmp_path / "eval"),
                                   progress=False, decode=box_decoder)
    replay, centred = result["dancers"]
    assert replay["goals"]["stage_range"]["passed"] and replay["goals"]["stage_range"]["value"] >= 0.85
    assert centred["goals"]["stage_coverage"]["passed"]  # the six position bins are all still visited
    assert centred["goals"]["stage_range"]["passed"] is False
    assert centred["second_half"]["stage"]["position_span_ratio"] < 0.85
    assert centred["second_half"]["stage"]["outer_shares"] == [0.0, 0.0]
    assert min(centred["second_half"]["stage"]["data_outer_shares"]) > 0.02
    assert result["goals"]["stage_range"]["passed"] is False
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["goals"]["stage_range"]["values"] == [replay["goals"]["stage_range"]["value"],
                                                       centred["goals"]["stage_range"]["value"]]
    assert saved["goals"]["clip_balance"]["passed"]  # one clip
    text = (tmp_path / "eval" / "report.md").read_text()
    assert "| stage range (x data) |" in text and "frames in the outer tenth of the data's positions" in text
    lines = demo.verdict_lines(str(tmp_path / "eval" / "metrics.json"))
    assert any(line.startswith("  goals (second half): MISSED stage_range") for line in lines)
