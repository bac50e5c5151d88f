"""The sampling controls' table drives everything derived from it: a control added there and missed by the
trainer's settings, the export's checks, the calibration or the bench fails here."""

import pytest

from tf_dance import bench, calibration, cli, config, controls, rollout, sequence_training

DIM = 10


def _bad(control):
    """A value control `control` must refuse."""
    if isinstance(control.default, bool):
        return 1
    if isinstance(control.default, int):
        return DIM
    return -1.0


@pytest.mark.parametrize("name", list(controls.CONTROLS))
def test_every_control_has_its_trainer_setting_and_check(name):
    control = controls.CONTROLS[name]
    setting = sequence_training.SETTINGS[f"rollout_{name}"]
    assert (setting.default, setting.help) == (control.default, control.help)
    assert type(setting.default) is type(control.default)
    assert config.check(f"rollout_{name}", setting, control.default) == control.default
    with pytest.raises(cli.UserError, match=f"rollout_{name}"):
        config.check(f"rollout_{name}", setting, 1 if isinstance(control.default, bool) else -1)
    assert name in sequence_training.rollout_recipe(sequence_training.resolve_config({}))
    if control.baked:  # baked into the graph: checked at export, recorded, and reset by the bench's plain rows
        assert rollout.SAMPLING[name] == control.default == bench._NO_CONTROLS[name]
        assert rollout.check_sampling({name: control.default}, DIM)[name] == control.default
        with pytest.raises(cli.UserError, match=f"sampling control {name} must"):
            rollout.check_sampling({name: _bad(control)}, DIM)
    else:  # a signature input the caller passes
        assert name not in rollout.SAMPLING
    if control.high is not None:  # the setting and the export refuse what lies beyond the same bound
        beyond = control.high if control.high_open else 2 * control.high
        with pytest.raises(cli.UserError, match=f"rollout_{name}"):
            config.check(f"rollout_{name}", setting, beyond)
        assert controls.problem(name, beyond, DIM)


@pytest.mark.parametrize("name", list(controls.CONTROLS))
def test_every_calibrated_control_is_in_the_grid_and_has_its_setting(name):
    control = controls.CONTROLS[name]
    assert (name in calibration.GRID) == bool(control.calibrate) == (f"calibrate_{name}" in sequence_training.SETTINGS)
    if not control.calibrate:
        return
    setting = sequence_training.SETTINGS[f"calibrate_{name}"]
    assert f"--calibrate_{name}" in sequence_training.SETTINGS["calibrate_frames"].help
    assert f"--rollout_{name}" in setting.help and setting.default == []
    with pytest.raises(cli.UserError, match=f"calibrate_{name}"):
        config.check(f"calibrate_{name}", setting, [control.default, -1.0])
    base = {**controls.SAMPLING, "temperature": 1.0, "noise": 0.0}
    assert [c[name] for c in calibration.candidates(base, **{name: [0.5]})] == [base[name], 0.5]
    cfg = sequence_training.resolve_config(dict(calibrate_frames=100, **{f"calibrate_{name}": [0.5]}))
    assert [c[name] for c in sequence_training.calibration_candidates(cfg, base)] == [base[name], 0.5]


def test_nothing_else_claims_to_be_a_control():
    rollout_settings = {k[len("rollout_"):] for k in sequence_training.SETTINGS if k.startswith("rollout_")}
    assert rollout_settings == set(controls.CONTROLS)
    assert set(bench._NO_CONTROLS) == set(rollout.SAMPLING) == {n for n, c in controls.CONTROLS.items() if c.baked}
    assert set(calibration.GRID) <= set(controls.CONTROLS)
