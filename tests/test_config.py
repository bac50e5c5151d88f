"""`config`: one declaration of settings gives the checks of a Python config, the flags and the flagfile reader."""

import re

import pytest
from absl import flags

from tf_dance import cli, config

SETTINGS = {
    "rate": config.Setting(0.5, "A rate.", low=0.0, high=1.0, high_open=True),
    "steps": config.Setting(10, "Steps.", low=1),
    "xla": config.Setting(False, "XLA."),
    "kind": config.Setting("lstm", "Kind.", choices=("lstm", "fnn")),
    "sizes": config.Setting([4, 8], "Sizes.", item=int, check=lambda v: len(v) == 2, check_help="must be 2 sizes"),
}


def test_values_are_parsed_and_checked_against_their_setting():
    steps = config.check("steps", SETTINGS["steps"], 3.0)
    assert steps == 3 and isinstance(steps, int)
    assert config.check("sizes", SETTINGS["sizes"], "2, 3") == [2, 3]
    assert config.check("rate", SETTINGS["rate"], 0.0) == 0.0
    for name, value, message in [("rate", 1.0, "rate must be < 1.0"), ("rate", -0.1, "rate must be >= 0.0"),
                                 ("steps", 2.5, "steps must be a finite int"), ("steps", True, "finite int"),
                                 ("rate", float("nan"), "finite float"), ("xla", 1, "true or false"),
                                 ("kind", "gru", "must be one of ['lstm', 'fnn']"),
                                 ("sizes", "a,b", "comma-separated list of ints"), ("sizes", [1], "must be 2 sizes")]:
        with pytest.raises(cli.UserError, match=re.escape(message)):
            config.check(name, SETTINGS[name], value)


def test_resolve_fills_defaults_and_refuses_unknown_names():
    assert config.resolve(SETTINGS, {"steps": 5}) == {"rate": 0.5, "steps": 5, "xla": False, "kind": "lstm",
                                                      "sizes": [4, 8]}
    with pytest.raises(cli.UserError, match=r"unknown setting\(s\) \['stepz'\]"):
        config.resolve(SETTINGS, {"stepz": 5})


def test_the_flags_and_a_flagfile_apply_the_same_rules(tmp_path):
    flag_values = flags.FlagValues()
    config.define_flags(SETTINGS, flag_values)
    flag_values(["prog", "--steps=4", "--sizes=1,2"])
    assert flag_values.steps == 4 and flag_values.sizes == ["1", "2"] and flag_values["rate"].help == "A rate."
    with pytest.raises(flags.IllegalFlagValueError):
        flag_values(["prog", "--rate=1.0"])  # the open upper bound, checked by a validator
    path = tmp_path / "run.flags"
    path.write_text("# a comment\n--steps=7\n--kind=fnn\n")
    assert config.flagfile_settings(SETTINGS, str(path)) == {"steps": 7, "kind": "fnn"}
    path.write_text("--epochs=3\n")
    with pytest.raises(cli.UserError, match=f"{path}: .*epochs"):
        config.flagfile_settings(SETTINGS, str(path))
