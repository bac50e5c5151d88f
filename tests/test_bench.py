"""The bench's settings (the benchmarks themselves take minutes to hours and are run by hand)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_faithfulness_bench_runs_the_papers_mse_recipe_at_the_quick_size():
    from tf_dance import bench, sequence_training

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
