"""Each measure must pass the data itself and fail what it exists to catch."""


import numpy as np
import pytest

from tf_dance import autoencoder, dancer, data, metrics

from conftest import dance_latents

FPS = 24.0
DIM = 32


@pytest.fixture(scope="module")
def train():
    return dance_latents(6000, seed=0, dim=DIM)


@pytest.fixture(scope="module")
def reference(train):
    return metrics.Reference(train, FPS, clusters=32, seed=0)


def test_longest_run_and_windowed_mean():
    assert metrics.longest_run([0, 1, 1, 0, 1, 1, 1, 0]) == (3, 4)
    assert metrics.longest_run([1, 1]) == (2, 0)
    assert metrics.longest_run(np.zeros(5, bool)) == (0, 0)
    np.testing.assert_allclose(metrics.windowed_mean(np.arange(7.0), 3), [1.0, 4.0])
    np.testing.assert_allclose(metrics.motion([[0, 0], [3, 4], [3, 4]]), [5.0, 0.0])
    z = np.random.default_rng(0).normal(size=(50, 3))
    spread = metrics.window_spread(z, 10)
    brute = [np.sqrt(np.mean(np.sum((w - w.mean(0)) ** 2, axis=1))) for w in (z[i:i + 10] for i in range(41))]
    np.testing.assert_allclose(spread, brute, atol=1e-9)


def test_nearest_matches_brute_force_and_respects_exclusion():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 7)), rng.normal(size=(3000, 7))
    brute = np.linalg.norm(a[:, None] - b[None], axis=2)
    dist, idx = metrics.nearest(a, b)
    np.testing.assert_array_equal(idx, brute.argmin(1))
    np.testing.assert_allclose(dist, brute.min(1), rtol=1e-4, atol=1e-4)
    keys_a, keys_b = np.arange(50) * 60, np.arange(3000)
    dist, idx = metrics.nearest(a, b, exclude=(keys_a, keys_b, 10))
    assert np.all(np.abs(keys_b[idx] - keys_a) >= 10)
    masked = np.where(np.abs(keys_a[:, None] - keys_b[None]) < 10, np.inf, brute)
    np.testing.assert_array_equal(idx, masked.argmin(1))


def test_kmeans_finds_separated_blobs():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(5, 3)) * 20
    x = np.concatenate([c + rng.normal(size=(200, 3)) for c in centres])
    found = metrics.kmeans(x, 5, seed=0)
    assert found.shape == (5, 3)
    assert np.max(np.min(np.linalg.norm(centres[:, None] - found[None], axis=2), axis=1)) < 0.5
    np.testing.assert_array_equal(found, metrics.kmeans(x, 5, seed=0))
    assert len(metrics.kmeans(np.ones((30, 2)), 8)) == 1  # fewer distinct points than k


def test_data_itself_passes_every_check(reference, train):
    excerpt = reference.evaluate(train[2000:3200])
    assert not excerpt["freeze"]["frozen"]
    assert 0.85 <= excerpt["coverage"]["coverage_ratio"] <= 1.15
    assert excerpt["coverage"]["in_distribution_share"] > 0.95
    assert 0.6 < excerpt["motion"]["motion_ratio"] < 1.6
    whole = reference.evaluate(train)
    assert not whole["freeze"]["frozen"] and whole["coverage"]["coverage_ratio"] == pytest.approx(1.0)


def test_new_plausible_dance_is_not_flagged(reference):
    other = dance_latents(1200, seed=7, dim=DIM)  # same style, different choreography
    result = reference.evaluate(other)
    flags = {k: v for k, v in result["verdicts"].items() if k != "rules"}
    assert not any(flags.values()), flags
    assert result["novelty"]["copy_share"] < 0.3
    assert 0.6 < result["novelty"]["novelty_ratio"] < 2.0


def test_holding_a_pose_is_frozen(reference, train):
    rng = np.random.default_rng(2)
    moving = train[500:548]
    jitter = 0.02 * np.median(metrics.motion(train))  # per dimension: adds up to 0.23x the median per frame
    held = np.repeat(train[548:549], 552, axis=0) + jitter * rng.normal(size=(552, train.shape[1]))
    result = reference.evaluate(np.concatenate([moving, held]).astype(np.float32))
    assert result["freeze"]["frozen"] and result["verdicts"]["frozen"]
    # windows that hold a moving frame or two can still count as still: edges blur by a few frames
    assert result["freeze"]["longest_still_seconds"] == pytest.approx(552 / FPS, abs=0.25)
    assert result["freeze"]["longest_still_start_seconds"] == pytest.approx(48 / FPS, abs=0.25)
    assert result["verdicts"]["sluggish"] and result["verdicts"]["narrow"]


def test_settling_into_a_pose_is_frozen(reference, train):
    t = np.arange(1500)[:, None]
    settling = train[3000] + (train[3001:4501] - train[3000]) * np.exp(-t / 120.0)
    result = reference.evaluate(settling)
    assert result["verdicts"]["frozen"]
    assert result["motion"]["tail_motion_ratio"] < 0.05


def test_verbatim_replay_is_a_copy(reference, train):
    result = reference.evaluate(train[1237:1237 + 960])
    novelty = result["novelty"]
    assert result["verdicts"]["copying"] and novelty["copy_share"] == 1.0
    assert novelty["longest_copy_seconds"] == pytest.approx(960 / FPS)
    np.testing.assert_array_equal(novelty["window_sources"], 1237 + 24 * np.arange(40))
    assert not result["verdicts"]["frozen"]


def test_copy_found_with_a_strided_bank(train):
    ref = metrics.Reference(train, FPS, max_bank=2000)  # stride 3: shifted queries must still line up
    assert ref.bank_stride == 3
    result = ref.evaluate(train[1001:1001 + 480])
    assert result["novelty"]["copy_share"] == 1.0
    assert not ref.evaluate(dance_latents(1200, seed=7, dim=DIM))["verdicts"]["copying"]


def test_collapse_to_the_average_and_noise_are_caught(reference, train):
    rng = np.random.default_rng(3)
    average = train.mean(0) + 1e-3 * rng.normal(size=(600, train.shape[1]))
    result = reference.evaluate(average.astype(np.float32))
    assert result["verdicts"]["frozen"] and result["coverage"]["spread_ratio"] < 0.05
    shuffled = reference.evaluate(train[rng.permutation(len(train))[:600]])
    assert shuffled["verdicts"]["hectic"] and not shuffled["verdicts"]["frozen"]
    walk = np.cumsum(0.05 * rng.normal(size=(600, train.shape[1])), axis=0) + train.mean(0)
    assert reference.evaluate(walk.astype(np.float32))["verdicts"]["off_distribution"]


def test_bad_inputs_raise(reference, train):
    with pytest.raises(ValueError, match="at least"):
        metrics.Reference(train[:50], FPS)
    with pytest.raises(ValueError, match="never change"):
        metrics.Reference(np.ones((500, 4), np.float32), FPS)
    with pytest.raises(ValueError, match=r"\[T, 32\]"):
        reference.evaluate(np.zeros((100, 8), np.float32))
    bad = train[:100].copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reference.evaluate(bad)


def test_short_rollout_skips_novelty(reference, train):
    result = reference.evaluate(train[:10])
    assert result["novelty"]["windows"] == 0 and not result["verdicts"]["copying"]


def test_sixty_thousand_frames_are_judged_in_windows():
    train = dance_latents(60000, seed=0, dim=128)
    generated = dance_latents(60000, seed=5, dim=128)
    reference = metrics.Reference(train, FPS)
    result = reference.evaluate(generated)
    assert not result["verdicts"]["frozen"] and not result["verdicts"]["copying"]
    assert result["novelty"]["windows"] == 2500


def test_a_short_loop_is_repetitive_and_the_data_is_not(reference, train):
    loop = np.tile(train[2000:2036], (60, 1))  # a 1.5-second move danced 60 times
    result = reference.evaluate(loop)
    assert result["verdicts"]["repetitive"] and result["repetition"]["repeat_share"] > 0.9
    assert not result["verdicts"]["frozen"]
    data = reference.evaluate(train[:2160])
    assert not data["verdicts"]["repetitive"]
    assert data["repetition"]["repeat_share"] < 0.5
    assert not reference.evaluate(dance_latents(2160, seed=9, dim=DIM))["verdicts"]["repetitive"]


def test_clip_helpers():
    clips = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    assert data.clip_bounds(clips) == [(0, 3), (3, 5), (5, 9)]
    np.testing.assert_array_equal(metrics.inside_clips(clips, [0, 1, 2, 3, 5, 7, 8], 2),
                                  [True, True, False, True, True, True, False])
    np.testing.assert_array_equal(metrics.excerpt_starts(clips, 3, 10), [0, 5, 6])
    assert len(metrics.excerpt_starts(clips, 5, 3)) == 0
    np.testing.assert_array_equal(metrics.stretch_starts(clips, 3, 10), [0, 5, 6])
    np.testing.assert_array_equal(metrics.stretch_starts(clips, 5, 3), [0, 2, 4])  # no clip that long
    np.testing.assert_array_equal(data.check_clips(None, 4), np.zeros(4))
    with pytest.raises(ValueError, match="non-decreasing"):
        data.check_clips(np.array([0, 1, 0]), 3, numbered=False)
    with pytest.raises(ValueError, match="one id per"):
        data.check_clips(np.array([0, 1]), 3, numbered=False)


def test_a_cut_is_never_counted_as_motion():
    a, b = dance_latents(1500, seed=0, dim=DIM), dance_latents(1500, seed=1, dim=DIM) + 20.0  # two clips far apart
    train, clips = np.concatenate([a, b]), np.repeat([0, 1], 1500)
    reference = metrics.Reference(train, FPS, clips=clips)
    naive = metrics.Reference(train, FPS)  # the same frames taken for one video
    per_clip = np.concatenate([metrics.motion(a), metrics.motion(b)]).mean()
    assert reference.data_motion.mean() == pytest.approx(per_clip, rel=1e-6)
    assert naive.data_motion.mean() > 1.15 * per_clip  # the single jump at the cut
    # a replay of one clip moves exactly like the data; the cut made the data look livelier
    assert reference.motion_report(b)["motion_ratio"] == pytest.approx(1.0, abs=0.05)
    assert naive.motion_report(b)["motion_ratio"] < 0.9
    # no one-second window, novelty window or spread straddles the cut
    w = reference.window
    assert len(reference.data_still) == 2 * (1500 - w + 1) < len(naive.data_still)
    assert metrics.inside_clips(clips, reference.bank_starts, w).all()
    assert not metrics.inside_clips(clips, naive.bank_starts, w).all()
    band = reference.motion_curve(b)["data_band"]
    assert band[2] < naive.motion_curve(b)["data_band"][2] or band[0] > naive.motion_curve(b)["data_band"][0]
    result = reference.evaluate(b)
    assert not any(v for k, v in result["verdicts"].items() if k not in ("rules", "copying"))
    with pytest.raises(ValueError, match="inside one clip"):
        metrics.Reference(train[:600], FPS, clips=np.arange(600) // 20)  # clips shorter than a window


def test_second_half_judges_a_dance_that_starts_well_then_loops(reference, train):
    good_start = train[1000:2200]
    loop = np.tile(train[3000:3036], (34, 1))  # then a 1.5-second move, over and over
    result = reference.evaluate(np.concatenate([good_start, loop]))
    half, goals = result["second_half"], result["goals"]
    assert half["start_frame"] == len(good_start) + len(loop) - half["frames"]
    assert half["repetition"]["repeat_share"] > 0.9 and goals["recurring_seconds"]["passed"] is False
    assert half["coverage"]["coverage_ratio"] < 0.5 and goals["pose_coverage"]["passed"] is False
    assert result["verdicts"]["looping"] and result["verdicts"]["narrow_second_half"]
    assert goals["stage_coverage"]["passed"] is None and "stuck_in_place" not in result["verdicts"]


def test_a_replay_of_the_data_meets_the_latent_goals(reference, train):
    result = reference.evaluate(train[:4800])
    goals = result["goals"]
    for name in ("freeze", "recurring_seconds", "pose_coverage"):
        assert goals[name]["passed"], (name, goals[name])
    assert goals["on_screen_motion"]["passed"] is None  # nothing decoded
    assert not result["verdicts"]["looping"] and not result["verdicts"]["narrow_second_half"]
    assert result["second_half"]["repetition"]["blocks"] == 1
    other = reference.evaluate(dance_latents(2400, seed=9, dim=DIM))
    assert not other["verdicts"]["looping"] and not other["verdicts"]["narrow_second_half"]


def test_stage_track_finds_the_silhouette():
    frames = np.zeros((3, 54, 96, 1), np.uint8)
    frames[0, 10:50, 20:30] = 255     # a 40-row box centred at column 25
    frames[1, 30:50, 70:76] = 200     # a 20-row box centred at column 73
    frames[1, 0, 0] = 255             # one stray pixel moves neither
    track = metrics.stage_track(frames)
    np.testing.assert_allclose(track[0], [25 / 96, 40 / 54], atol=1e-6)
    np.testing.assert_allclose(track[1], [73 / 96, 20 / 54], atol=0.01)
    assert np.isnan(track[2]).all()   # an empty frame has no place on the stage


@pytest.fixture(scope="module")
def dancer_frames():
    return dancer.dancer(2400, seed=0, fps=FPS)["frames"]


def test_stage_coverage_flags_a_dancer_stuck_in_one_place(dancer_frames):
    track = metrics.stage_track(dancer_frames)
    stage = metrics.Stage(track)
    replay = stage.report(track[1200:])
    assert replay["stage_coverage"] >= 0.8 and replay["positions_visited"] >= 5
    width = dancer_frames.shape[2]
    centred = np.stack([np.roll(f, int(round(width / 2 - x * width)), axis=1)
                        for f, x in zip(dancer_frames[1200:], track[1200:, 0])])
    stuck = stage.report(metrics.stage_track(centred))
    assert stuck["positions_visited"] == 1 and stuck["sizes_visited"] == replay["sizes_visited"]
    assert stuck["stage_coverage"] < 0.3 < stuck["data_stage_coverage_p10"]
    blank = stage.report(metrics.stage_track(np.zeros_like(dancer_frames[:100])))
    assert blank["stage_coverage"] == 0.0 and blank["empty_share"] == 1.0
def test_spearman_and_frame_iou():
    """The autoencoder's evaluation numbers: rank correlation (ties averaged) and per-frame IoU."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = x ** 3 + 0.1 * rng.normal(size=50)
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731 (no ties)
    d = rank(x) - rank(y)
    assert metrics.spearman(x, y) == pytest.approx(1 - 6 * (d ** 2).sum() / (50 * (50 ** 2 - 1)))
    assert metrics.spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert metrics.spearman(x, -x) == pytest.approx(-1.0)
    assert metrics.spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)  # ties
    np.testing.assert_allclose(metrics._ranks([30, 10, 20, 20]), [3, 0, 1.5, 1.5])
    a = np.zeros((3, 4, 4, 1))
    b = np.zeros((3, 4, 4, 1))
    a[0, :2] = 1
    b[0, :1] = 1  # IoU 1/2
    a[1, 0, 0] = 1  # IoU 0
    np.testing.assert_allclose(autoencoder.frame_iou(a >= 0.5, b >= 0.5), [0.5, 0.0, 1.0])


def _sweep(frames, reach=1.0):
    """A stage track crossing the stage (centre 0.15-0.85) and changing size; `reach` < 1 keeps it nearer the middle."""
    t = np.arange(frames) / FPS
    return np.stack([0.5 + reach * 0.35 * np.sin(2 * np.pi * t / 20.0), 0.6 + 0.2 * np.sin(2 * np.pi * t / 7.0)], 1)


def test_stage_range_catches_a_dancer_who_stays_nearer_the_middle():
    stage = metrics.Stage(_sweep(4800))
    replay = stage.report(_sweep(2400))
    assert replay["stage_range"] == pytest.approx(1.0, abs=0.05) and replay["position_span"] > 0.6
    assert min(replay["outer_shares"]) > 0.05 and min(replay["data_outer_shares"]) > 0.05
    middle = stage.report(_sweep(2400, reach=0.7))
    # every bin is still visited, so stage coverage cannot see it; the span and the edges can
    assert middle["stage_coverage"] == 1.0
    assert middle["position_span_ratio"] == pytest.approx(0.7, abs=0.05)
    assert middle["size_span_ratio"] == pytest.approx(1.0, abs=0.05) and middle["stage_range"] < 0.85
    assert middle["outer_shares"] == [0.0, 0.0]
    blank = stage.report(np.full((100, 2), np.nan))
    assert blank["stage_range"] == 0.0 and blank["outer_shares"] == [None, None]


def test_stage_range_catches_a_dancer_who_wanders_past_the_datas_stage():
    """A walk that keeps the data's positions but grows and shrinks twice as far: the span ratio further from 1
    is the stage range, so the height's 2x misses although the centre's span is the data's."""
    stage = metrics.Stage(_sweep(4800))
    wander = _sweep(2400)
    wander[:, 1] = 0.6 + 2.0 * (wander[:, 1] - 0.6)
    report = stage.report(wander)
    assert report["position_span_ratio"] == pytest.approx(1.0, abs=0.05)
    assert report["size_span_ratio"] == pytest.approx(2.0, abs=0.1)
    assert report["stage_range"] == report["size_span_ratio"]
    judged = metrics.GOALS["stage_range"].judge({"stage": report})
    assert judged["passed"] is False and metrics.GOALS["stage_range"].margin(judged) < 0
    near = metrics.GOALS["stage_range"].judge({"stage": dict(report, stage_range=1.1)})
    assert near["passed"] and 0 < metrics.GOALS["stage_range"].margin(near) < 1


def test_clip_balance_catches_a_dance_settled_in_one_clips_style():
    a, b = dance_latents(3000, seed=0, dim=DIM), dance_latents(3000, seed=1, dim=DIM) + 3.0  # two styles far apart
    train = np.concatenate([a, b])
    two = metrics.Reference(train, FPS, clips=np.repeat([0, 1], 3000), seed=0)
    balanced = two.evaluate(np.concatenate([train, train]))  # second half: both clips, as the data
    assert balanced["second_half"]["balance"]["shares"] == pytest.approx([0.5, 0.5], abs=0.01)
    assert balanced["goals"]["clip_balance"]["passed"]
    mostly_a = np.concatenate([a, a[:2400], b[:600]])  # second half: 80% in the first style
    settled = two.evaluate(mostly_a)
    assert settled["second_half"]["balance"]["shares"] == pytest.approx([0.8, 0.2], abs=0.01)
    assert settled["goals"]["clip_balance"]["value"] == pytest.approx(0.4, abs=0.02)
    assert settled["goals"]["clip_balance"]["passed"] is False
    one = metrics.Reference(train, FPS, seed=0)  # one clip: every dance is balanced
    alone = one.evaluate(np.concatenate([a, a]))
    assert alone["goals"]["clip_balance"]["passed"] and alone["second_half"]["balance"]["share_ratios"] == [1.0]


def test_a_goal_added_to_the_table_reaches_every_consumer(reference, train, monkeypatch):
    """A new goal is one measure plus one `Goal`: the goals block, the calibration's margins, misses, rows and
    progress line, the report's goals table and the bench's columns all take it from `GOALS`."""
    from tf_dance import bench, calibration, report
    toy = metrics.Goal("x data", "toy measure / data", "toy", scale=100, suffix="%",
                       judge=lambda h: dict(value=0.25, data=1.0, passed=False, target="toy >= 0.5"),
                       margin=lambda g: (g["value"] - 0.5) / 0.5)
    monkeypatch.setitem(metrics.GOALS, "toy", toy)
    result = reference.evaluate(train[:1200])
    assert result["goals"]["toy"] == dict(value=0.25, data=1.0, unit="x data", passed=False, target="toy >= 0.5")
    assert "toy" in calibration.misses(result) and calibration.margins(result)["toy"] == -0.5
    row = calibration._row(dict(noise=0.0), [result, result])
    assert row["toy"] == [0.25, 0.25] and "toy 25.00/25.00%" in calibration.describe(row)
    combined = report.combined_goals([result["goals"]])
    assert "| toy (x data) | 0.25 | 1 | toy >= 0.5 | **NO** |" in report._goals_table(combined, [result])
    bench_row = dict(dataset="d", row="r", recommended=False, all_goals_met=False,
                     **{name: [g["value"]] for name, g in result["goals"].items()},
                     **{f"data_{name}": g["data"] for name, g in result["goals"].items()})
    header, _, line = bench.dancing_table([bench_row]).splitlines()
    assert header.split(" | ")[-2] == "toy measure / data" and line.split(" | ")[-2] == "25.00"
    assert len(header.split(" | ")) == len(metrics.GOALS) + 3


def test_every_goal_and_verdict_is_declared_once():
    """Only the tables name the goals: each goal is judged, shown and ranked from its entry, and the verdicts that
    restate a goal name one."""
    assert all(v.restates in metrics.GOALS for v in metrics.VERDICTS.values() if v.restates)
    from tf_dance import calibration
    assert set(calibration.VERDICTS) == {n for n, v in metrics.VERDICTS.items() if not v.restates}
    assert len({g.label for g in metrics.GOALS.values()}) == len({g.short for g in metrics.GOALS.values()}) \
        == len(metrics.GOALS)


def test_screen_motion_counts_pixel_changes():
    still = np.zeros((5, 4, 4, 1), np.uint8)
    blink = still.copy()
    blink[1::2] = 255
    assert metrics.screen_motion(still) == 0.0
    assert metrics.screen_motion(blink) == 255.0
