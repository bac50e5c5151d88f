"""bench: the dancing table's formatting and its dataset flags (the measurements themselves are BENCHMARKS.md's)."""

import pytest

from tf_dance import bench, cli


def _row(recommended, **values):
    row = dict(dataset="real2", row="a setting", recommended=recommended, freeze=[0.0, 0.0],
               on_screen_motion=[1.234, 1.9], recurring_seconds=[0.05, 0.081], data_recurring=0.042,
               pose_coverage=[0.8, 0.9], stage_coverage=[None, 0.5], all_goals_met=False)
    row.update(values)
    return row


def test_dancing_table_gives_ranges_over_seeds_and_bolds_the_recommended_row():
    lines = bench.dancing_table([_row(False), _row(True, row="the one", all_goals_met=True)]).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| data | setting |")
    assert lines[2] == "| real2 | a setting | 0.00 | 1.23-1.90 | 5.00-8.10 (4.2) | 0.80-0.90 | 0.50 | no |"
    assert lines[3].startswith("| **real2** | **the one** |") and lines[3].endswith("| **yes** |")


def test_dataset_pairs_need_a_name_and_a_value():
    assert bench._pairs(["a=/x.npz", " b = /y.npz"], "--dancing_data") == {"a": "/x.npz", "b": "/y.npz"}
    with pytest.raises(cli.UserError, match="name=value"):
        bench._pairs(["=/x.npz"], "--dancing_data")
