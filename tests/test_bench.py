"""bench: table formatting, settings and a tiny music bench (the benchmarks themselves take minutes to hours and
are run by hand; their results are BENCHMARKS.md's)."""

import json
import os

import pytest

from tf_dance import bench, cli, sequence_training

from conftest import ROOT


def _row(recommended, **values):
    row = dict(dataset="real2", row="a setting", recommended=recommended, freeze=[0.0, 0.0],
               on_screen_motion=[1.234, 1.9], recurring_seconds=[0.05, 0.081], data_recurring_seconds=0.042,
               pose_coverage=[0.8, 0.9], stage_coverage=[None, 0.5], stage_range=[0.7, 0.95], clip_balance=[1.5, 0.4],
               all_goals_met=False)
    row.update(values)
    return row


def test_dancing_table_gives_ranges_over_seeds_and_bolds_the_recommended_row():
    lines = bench.dancing_table([_row(False), _row(True, row="the one", all_goals_met=True)]).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| data | setting |")
    assert lines[2] == ("| real2 | a setting | 0.00 | 1.23-1.90 | 5.00-8.10 (4.2) | 0.80-0.90 | 0.50 | 0.70-0.95 "
                        "| 0.40-1.50 | no |")
    assert lines[3].startswith("| **real2** | **the one** |") and lines[3].endswith("| **yes** |")


def test_dataset_pairs_need_a_name_and_a_value():
    assert bench._pairs(["a=/x.npz", " b = /y.npz"], "--dancing_data") == {"a": "/x.npz", "b": "/y.npz"}
    with pytest.raises(cli.UserError, match="name=value"):
        bench._pairs(["=/x.npz"], "--dancing_data")


def test_faithfulness_bench_runs_the_papers_mse_recipe_at_the_quick_size():
    def lstm(name, extra=()):
        settings = sequence_training.flagfile_settings(f"{ROOT}/flags/{name}")
        for flag in extra:  # "--name=value" overrides, as train_lstm reads them after the flagfile
            key, value = flag[2:].split("=")
            settings[key] = type(sequence_training.SETTINGS[key].default)(value)
        return sequence_training.resolve_config(settings)

    flagfile, extra = bench._FAITHFULNESS_LSTMS["paper MSE 2x256"]
    paper, quick, resized = lstm("paper_lstm.flags"), lstm("quick_lstm.flags"), lstm(flagfile, extra)
    assert resized["units"] == quick["units"] == 256 != paper["units"]
    assert {k: v for k, v in resized.items() if k != "units"} == {k: v for k, v in paper.items() if k != "units"}
    assert resized["head"] == "mse" and resized["input_noise"] == 0 and not resized["normalize"]
    assert bench._FAITHFULNESS_LSTMS["recommended"] == (None, [])  # the dataset's own dancing flagfile
    assert "faithfulness" in bench._BENCHES


def test_the_recommended_dancing_rows_roll_out_with_what_their_flagfile_records():
    for kind, table in (("plain", bench._DANCING_PLAIN), ("staged", bench._DANCING_STAGED)):
        label, flagfile, change, recipe = table[bench._DANCING_RECOMMENDED[kind]]
        assert recipe == {} and change == {}  # no override: what the export recorded
    settings = sequence_training.flagfile_settings(os.path.join(ROOT, "flags", "quick_lstm.flags"))
    assert settings["calibrate_frames"] > 0  # the dancer's recipe is calibrated for each training ...
    footage = sequence_training.flagfile_settings(os.path.join(ROOT, "flags", "footage_lstm.flags"))
    assert not footage.get("calibrate_frames")  # ... the footage's is not, and the bench compares the two
    keys = [bench._training_key(flagfile, change, 0) for _, flagfile, change, _ in bench._DANCING_STAGED]
    assert len(set(keys)) == 5  # quick at batch 4, the footage flagfile, it without the residual box, also without
    # the box weight, and calibrated
    for kind, table in (("plain", bench._DANCING_PLAIN), ("staged", bench._DANCING_STAGED)):
        assert [i for i, _ in bench._dancing_rows(kind)] == list(range(len(table)))
        assert bench._dancing_rows(kind, "recommended") == [(bench._DANCING_RECOMMENDED[kind],
                                                             table[bench._DANCING_RECOMMENDED[kind]])]
    calibrated = [row for row in bench._DANCING_STAGED if row[2].get("calibrate_frames")]
    assert len(calibrated) == 1 and calibrated[0][3] == {}
    sequence_training.resolve_config({**footage, **calibrated[0][2]})


def test_multiply_adds_counts_convolutions_and_dense_layers_of_nested_models():
    import keras
    inner = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3, padding="same"),
                              keras.layers.Flatten(), keras.layers.Dense(5)])
    outer = keras.Sequential([keras.Input((4, 4, 1)), inner, keras.layers.Dense(3)])
    assert bench.multiply_adds(outer) == 4 * 4 * 2 * 9 + 32 * 5 + 5 * 3


def test_autoencoder_bench_times_the_trainers_step_against_fit_and_the_machines_bound():
    out = bench.ae_train_rates(filters=(2, 2, 2, 2), batch=4, steps=1, repeats=1)
    label = "autoencoder 2,2,2,2"
    fit = out[f"{label}: train images/s (batch 4), Keras fit float32"]
    step = out[f"{label}: train images/s (batch 4), step float32"]
    assert fit > 0 and step > 0
    assert out[f"{label}: ratio step float32 / Keras fit (goal >= 1.5)"] == pytest.approx(step / fit)
    assert f"{label}: ratio step float32 XLA / Keras fit (goal >= 1.5)" in out
    assert any(k.startswith(f"{label}: ratio the trainer's default") for k in out)
    assert out[f"{label}: GFLOP per training step (3 x forward)"] > 0
    bound = bench.decode_bound((2, 2, 2, 2), goal=10, repeats=1, n=64)
    per_frame = bound["decoder 2,2,2,2: GFLOP per frame"]
    assert bound["decoder 2,2,2,2: GFLOP/s that 10 frames/s needs"] == pytest.approx(10 * per_frame)
    peak = bound["measured matrix product GFLOP/s, float32 (64 x 64, 2 cores)"]
    assert peak > 0 and bound["decoder 2,2,2,2: frames/s at that peak (float32; goal 10)"] == pytest.approx(
        peak / per_frame)


def test_the_music_bench_is_registered_and_parses_its_training_settings():
    assert "music" in bench._BENCHES
    assert bench.sequence_training_value("epochs", "10") == 10
    assert bench.sequence_training_value("music", "true") is True
    assert bench.sequence_training_value("calibrate_noise", "1.0;1.5") == [1.0, 1.5]
    with pytest.raises(cli.UserError, match="unknown train_lstm setting"):
        bench.sequence_training_value("unit", "3")


def test_a_tiny_music_bench_judges_the_conditioned_dance_by_the_long_rollout_goals_too(tmp_path):
    out = bench.bench_music(dancer_frames=2000, latents="poses", frames=1000, seeds=(0,), workdir=str(tmp_path),
                            change=dict(epochs=1, calibrate_frames=0, units=16, num_layers=1, batch_size=4))
    assert isinstance(out["every goal met (all seeds)"], bool)
    with open(tmp_path / "music.json") as f:
        row, = json.load(f)
    judged = row["long_rollout_goals"]
    assert {"freeze", "recurring_seconds", "pose_coverage"} <= set(judged)  # poses: no decoder, no stage goals
    assert all(isinstance(g["passed"], bool) for g in judged.values())
    missed = [k for k, g in judged.items() if not g["passed"]]
    assert out["seed 0: long-rollout goals missed on the song"] == (", ".join(missed) or "none")
    assert (tmp_path / "eval" / "seed0" / "metrics.json").exists()
    assert all(len(row["beat_phase"][k]) == 8 for k in ("rollout", "data", "unconditioned"))
