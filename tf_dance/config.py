"""One settings mechanism for both trainers, the bench and the tests.

A trainer declares its settings as a dict of `Setting`s; the same declaration gives its absl
flags (help text, bounds, choices), checks a Python `**config`, and reads a flagfile for code
that trains without the script. Flagfiles stay the only configs users edit.
"""

import dataclasses

import numpy as np
from absl import flags

from tf_dance import cli


@dataclasses.dataclass(frozen=True)
class Setting:
    default: object
    help: str
    choices: tuple = None
    low: float = None  # inclusive unless low_open
    high: float = None  # inclusive unless high_open
    low_open: bool = False
    high_open: bool = False
    item: type = None  # list settings: the type of each element
    check: object = None  # optional extra test of the parsed value
    check_help: str = ""  # what `check` requires, as "must ..."


def _number(name, s, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value) \
            or (isinstance(s.default, int) and int(value) != value):
        raise cli.UserError(f"{name} must be a finite {type(s.default).__name__}, got {value!r}")
    if s.low is not None and (value <= s.low if s.low_open else value < s.low):
        raise cli.UserError(f"{name} must be {'>' if s.low_open else '>='} {s.low}, got {value}")
    if s.high is not None and (value >= s.high if s.high_open else value > s.high):
        raise cli.UserError(f"{name} must be {'<' if s.high_open else '<='} {s.high}, got {value}")
    return type(s.default)(value)


def _items(name, s, value):
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    try:
        return [s.item(v) for v in value]
    except (TypeError, ValueError):
        raise cli.UserError(f"{name} must be a comma-separated list of {s.item.__name__}s, got {value!r}") from None


def check(name, s, value):
    """`value` parsed and checked against setting `s`; raises `cli.UserError` naming `name`."""
    if s.choices is not None:
        if value not in s.choices:
            raise cli.UserError(f"{name} must be one of {list(s.choices)}, got {value!r}")
    elif s.item is not None:
        value = _items(name, s, value)
    elif isinstance(s.default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise cli.UserError(f"{name} must be true or false, got {value!r}")
        value = bool(value)
    elif isinstance(s.default, (int, float)):
        value = _number(name, s, value)
    if s.check is not None and not s.check(value):
        raise cli.UserError(f"{name} {s.check_help} (got {value!r})")
    return value


def resolve(settings, overrides, what="setting"):
    """Defaults + `overrides`, each checked; raises `cli.UserError` on unknown names or bad values."""
    unknown = sorted(set(overrides) - set(settings))
    if unknown:
        raise cli.UserError(f"unknown {what}(s) {unknown}; known: {sorted(settings)}")
    config = {name: s.default for name, s in settings.items()}
    config.update(overrides)
    return {name: check(name, s, config[name]) for name, s in settings.items()}


def define_flags(settings, flag_values):
    """One absl flag per setting on `flag_values`, with its help text, bounds and choices."""
    for name, s in settings.items():
        args = dict(name=name, default=s.default, help=s.help, flag_values=flag_values)
        if s.choices is not None:
            flags.DEFINE_enum(enum_values=s.choices, **args)
        elif s.item is not None:
            flags.DEFINE_list(**{**args, "default": [str(v) for v in s.default]})
        elif isinstance(s.default, bool):
            flags.DEFINE_bool(**args)
        elif isinstance(s.default, int):
            flags.DEFINE_integer(lower_bound=s.low, upper_bound=s.high, **args)
        elif isinstance(s.default, float):
            flags.DEFINE_float(lower_bound=None if s.low_open else s.low,
                               upper_bound=None if s.high_open else s.high, **args)
        else:
            flags.DEFINE_string(**args)
        if s.low_open or s.high_open or s.item is not None or s.check is not None:
            flags.register_validator(name, lambda v, n=name, s=s: _valid(n, s, v), f"--{name} {_rule(s)}",
                                     flag_values=flag_values)


def _rule(s):
    if s.check_help:
        return s.check_help
    if s.item is not None:
        return f"must be a comma-separated list of {s.item.__name__}s"
    return " and ".join(f"must be {op} {bound}" for op, bound, on in (
        (">" if s.low_open else ">=", s.low, s.low is not None),
        ("<" if s.high_open else "<=", s.high, s.high is not None)) if on)


def _valid(name, s, value):
    try:
        check(name, s, value)
        return True
    except cli.UserError:
        return False


def flagfile_settings(settings, path, prog="tf_dance"):
    """The settings a flagfile sets, parsed by absl as the script would, for code that trains without
    the script (tests, bench). Flags that are not settings raise `cli.UserError`."""
    flag_values = flags.FlagValues()
    define_flags(settings, flag_values)
    try:
        flag_values([prog, f"--flagfile={path}"])
    except flags.Error as e:
        raise cli.UserError(f"{path}: {e}") from None
    return {name: flag_values[name].value for name in settings if flag_values[name].present}
