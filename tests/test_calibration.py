"""The rollout recipe calibrated per trained model: candidates, misses and margins, the choice, and
`train_lstm`'s calibration recorded in (and served from) the export."""

import json
import os

import numpy as np
import pytest

from tf_dance import (autoencoder, calibration, cli, data, metrics, rollout, savedmodels, sequence_model,
                      sequence_training)

BASE = dict(temperature=1.0, noise=0.3, **rollout.SAMPLING)


def _walk(frames=600, dim=3, seed=0):
    """Slowly wandering latents pulled back to 0 (so later frames come from the same distribution): the data
    every rollout here is judged against."""
    steps = 0.05 * np.random.default_rng(seed).standard_normal((frames, dim))
    out = np.zeros((frames, dim), np.float32)
    for t in range(1, frames):
        out[t] = 0.98 * out[t - 1] + steps[t]
    return out


def test_candidates_start_with_the_recipe_and_cover_every_combination_once():
    out = calibration.candidates(BASE, noise=[0.3, 1.2], smoothing=[0.0, 0.5])
    assert out[0] == BASE
    assert len(out) == 4  # (0.3, 0.0) is the recipe itself
    assert {(c["noise"], c["smoothing"]) for c in out} == {(0.3, 0.0), (0.3, 0.5), (1.2, 0.0), (1.2, 0.5)}
    assert all(c["temperature"] == 1.0 and c["box_dims"] == 0 for c in out)
    assert calibration.candidates(BASE, noise=[], smoothing=[]) == [BASE]
    with pytest.raises(cli.UserError, match="cannot calibrate"):
        calibration.candidates(BASE, temperature=[0.5])


def test_choose_prefers_the_least_shortfall_then_the_widest_worst_margin_then_the_first():
    rows = [dict(shortfall=0.0, margin=0.1), dict(shortfall=-0.2, margin=-0.2), dict(shortfall=0.0, margin=0.3),
            dict(shortfall=0.0, margin=0.3)]
    assert calibration.choose(rows) == 2
    assert calibration.choose(rows[:2]) == 0
    # one slight miss beats one bad miss, and two misses that add up to more
    assert calibration.choose([dict(shortfall=-3.5, margin=-3.5), dict(shortfall=-0.6, margin=-0.3)]) == 1
    assert calibration.choose([dict(shortfall=-0.9, margin=-0.5), dict(shortfall=-0.6, margin=-0.6)]) == 1


def test_misses_and_margins_pass_a_replay_and_catch_a_loop_and_a_freeze():
    walk = _walk(4200)
    train = walk[:3000]
    reference = metrics.Reference(train, 24.0, seed=0)
    replay = reference.evaluate(walk[3000:])  # more of the same dance, never trained on
    assert calibration.misses(replay) == []
    assert all(v >= 0 for v in calibration.margins(replay).values())

    loop = reference.evaluate(np.tile(train[500:524], (50, 1)))  # one second, over and over
    assert {"recurring_seconds", "repetitive"} <= set(calibration.misses(loop))
    assert calibration.margins(loop)["recurring_seconds"] < 0

    stage = metrics.Stage(np.stack([np.linspace(0.2, 0.8, 3000), np.full(3000, 0.6)], 1))
    track = np.stack([np.linspace(0.2, 0.8, 600), np.full(600, 0.6)], 1)
    track[::2] = np.nan  # the dancer is out of the picture every other frame
    gone = reference.evaluate(walk[3000:], stage=stage.report(track))
    assert "out_of_picture" in calibration.misses(gone)
    assert "out_of_picture" not in calibration.misses(reference.evaluate(walk[3000:], stage=stage.report(
        np.stack([np.linspace(0.2, 0.8, 600), np.full(600, 0.6)], 1))))

    sway = lambda n, reach: np.stack([0.5 + reach * np.sin(np.arange(n) / 10.0), np.full(n, 0.6)], 1)  # noqa: E731
    stage = metrics.Stage(sway(3000, 0.3))
    across = reference.evaluate(walk[3000:], stage=stage.report(sway(600, 0.3)))
    middle = reference.evaluate(walk[3000:], stage=stage.report(sway(600, 0.15)))  # half as far out
    assert "stage_range" not in calibration.misses(across) and calibration.margins(across)["stage_range"] > 0.9
    assert "stage_range" in calibration.misses(middle) and calibration.margins(middle)["stage_range"] < 0
    assert calibration.margins(replay)["clip_balance"] == 1.0

    two = metrics.Reference(train, 24.0, clips=np.repeat([0, 1], 1500), seed=0)
    assert "clip_balance" not in calibration.misses(two.evaluate(np.concatenate([train, train])))
    settled = two.evaluate(np.concatenate([train[:1500], train[:1500]]))  # the first clip's moves only
    assert "clip_balance" in calibration.misses(settled) and calibration.margins(settled)["clip_balance"] < 0

    frozen = reference.evaluate(np.repeat(train[700:701], 1200, axis=0) + 1e-4)
    assert {"freeze", "frozen", "sluggish"} <= set(calibration.misses(frozen))
    assert calibration.margins(frozen)["latent_motion"] < 0 and calibration.margins(frozen)["freeze"] < 0


def test_calibrate_judges_every_candidate_and_returns_the_chosen_one():
    train = _walk()
    mean, std = sequence_model.standardizer(train)
    model = sequence_model.build_model("lstm", 3, mean, std, batch_size=1, units=8, num_layers=1, head="mdn",
                                       mixtures=2, seed=0)
    recipes = calibration.candidates(BASE, smoothing=[0.0, 0.9])
    chosen, record = calibration.calibrate(model, train, 24.0, recipes, frames=300, random_seed=3, progress=False)
    rows = record["candidates"]
    assert [r["recipe"]["smoothing"] for r in rows] == [0.0, 0.9]
    assert record["chosen"] == calibration.choose(rows) and chosen == recipes[record["chosen"]]
    assert record["frames"] == 300 and record["rollouts"] == 2 and len(record["seed_starts"]) == 2
    assert record["random_seed"] == 3 + calibration.SEED_OFFSET and not record["decoded"]
    # An untrained mixture head samples every frame afresh: far more motion than the data's slow walk,
    # which smoothing the returned frames takes away.
    unsmoothed, smoothed = rows
    assert "hectic" in unsmoothed["missed"]
    assert min(smoothed["latent_motion"]) < max(unsmoothed["latent_motion"]) / 5
    assert all(v is None for v in unsmoothed["on_screen_motion"])  # no decoder, no frame measures
    again, _ = calibration.calibrate(model, train, 24.0, recipes, frames=300, random_seed=3, progress=False)
    assert again == chosen


def _decoder(tmp_path, dim):
    return cli.export_version(str(tmp_path / "saved"), "decoder", lambda d: autoencoder.export_decoder(
        autoencoder.build_decoder(data.HEIGHT, data.WIDTH, 1, [4, 4, 4, 4], latent_dim=dim), d))


def test_train_lstm_records_the_calibrated_recipe_and_serves_it(tmp_path):
    latents = tmp_path / "latents.npy"
    np.save(latents, _walk(400))
    decoder = _decoder(tmp_path, 3)
    cfg = dict(model="lstm", head="mdn", mixtures=2, units=8, num_layers=1, batch_size=2, seq_length=10, epochs=1,
               jit_compile=False, rollout_noise=0.3, calibrate_frames=240, calibrate_smoothing=[0.0, 0.9],
               calibrate_decoder=decoder)
    result = sequence_training.train_and_evaluate(str(latents), str(tmp_path / "run"), str(tmp_path / "saved"),
                                                  load_decoder=savedmodels.calibration_decoder, **cfg)
    info = savedmodels.record(result["export_dir"])
    cal = info["calibration"]
    assert [r["recipe"]["smoothing"] for r in cal["candidates"]] == [0.0, 0.9] and cal["decoded"]
    assert all(v is not None for r in cal["candidates"] for v in r["on_screen_motion"])
    chosen = cal["candidates"][cal["chosen"]]["recipe"]
    assert info["rollout"]["smoothing"] == chosen["smoothing"] and info["rollout"]["noise"] == 0.3
    served = savedmodels.SequenceModel(result["export_dir"])
    assert served.controls["smoothing"] == chosen["smoothing"]
    json.dumps(info)  # the record stays plain JSON


def test_calibration_settings_are_checked_before_training(tmp_path):
    latents = tmp_path / "latents.npy"
    np.save(latents, _walk(400))
    base = dict(model="lstm", units=8, num_layers=1, batch_size=2, seq_length=10, epochs=1, jit_compile=False,
                calibrate_frames=240)
    with pytest.raises(cli.UserError, match="calibrate_smoothing"):
        sequence_training.train_and_evaluate(str(latents), str(tmp_path / "a"), str(tmp_path / "s"),
                                             **base, calibrate_smoothing=[0.5, 1.0])
    with pytest.raises(cli.UserError, match="calibrate_noise"):
        sequence_training.train_and_evaluate(str(latents), str(tmp_path / "a"), str(tmp_path / "s"),
                                             **base, calibrate_noise=[1.2, -0.5])
    with pytest.raises(cli.UserError, match="calibrate_coherence"):
        sequence_training.train_and_evaluate(str(latents), str(tmp_path / "a"), str(tmp_path / "s"),
                                             **base, calibrate_coherence=[0.9, 1.0])
    with pytest.raises(cli.UserError, match="takes 5-d latents but these are 3-d"):
        sequence_training.train_and_evaluate(str(latents), str(tmp_path / "b"), str(tmp_path / "s"),
                                             **base, calibrate_decoder=_decoder(tmp_path, 5),
                                             load_decoder=savedmodels.calibration_decoder)
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")
