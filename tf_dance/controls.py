"""The rollout's sampling controls, declared once (what each does: `tf_dance.rollout`'s doc).

Each control is one `Control` here, and everything else is derived from this table: the export's
checks (`rollout.check_sampling`) and baked-in defaults (`rollout.SAMPLING`), the LSTM trainer's
`--rollout_<name>` and `--calibrate_<name>` settings, the calibration's grid (`calibration.GRID`)
and the bench's "no controls" recipe. A new control is one entry here plus its sampling maths in
`rollout.ServingModule`.

Pure Python, so scripts and libraries that only read the table do not load TensorFlow.
"""

import dataclasses

MAX_CONTROL = 1e3  # temperature and noise: far beyond any useful setting, and the arithmetic stays finite


@dataclasses.dataclass(frozen=True)
class Control:
    default: object  # its type is the control's: float, int (a count of trailing latent dimensions) or bool
    help: str  # the trainer's --rollout_<name> help text
    high: float = None  # numbers: the upper bound (inclusive unless high_open); the lower bound is always 0
    high_open: bool = False
    high_why: str = ""  # why a number must stay below an open `high`, for its error message
    note: str = ""  # counts: what the dimensions are, for the error message ("{dim}": the latent width)
    baked: bool = True  # False: a signature input the caller passes (temperature, noise), recorded as the default
    calibrate: str = ""  # what the calibration may vary, for --calibrate_<name>'s help; "" = never varied


_BAKED = "Baked into the export and recorded in its recipe."
CONTROLS = {
    "temperature": Control(1.0, "Sampling temperature this model is meant to be rolled out with: recorded in the "
                                "export, used by generate/evaluate/demo unless they are given --temperature (no "
                                "effect on the mse head).", high=MAX_CONTROL, baked=False),
    "noise": Control(0.0, "Std of the noise on each fed-back frame (training stds) this model is meant to be rolled "
                          "out with: recorded in the export, used unless --noise is given.", high=MAX_CONTROL,
                     baked=False, calibrate="Rollout noise"),
    "width": Control(1.0, "Mixture head: the sampled Gaussian's spread is temperature x this factor, while the "
                          f"component is still drawn at the temperature (< 1: as many moves, less jitter). {_BAKED}"),
    "smoothing": Control(0.0, "Exponential smoothing of the sampled frames (all but the box dims): each frame moves "
                              f"only (1 - this) of the way to the sampled one (0 = none). {_BAKED}", high=1.0,
                         high_open=True, high_why="1 would never move", calibrate="Smoothing"),
    "box_dims": Control(0, "The last N latent dimensions are the stage box (3 for --stage latents: centre x, centre "
                           "y, height), sampled with --rollout_box_width/--rollout_box_smoothing; 0 = none. "
                           f"{_BAKED}", note="the trailing stage-box dimensions of the {dim}-d latents"),
    "box_width": Control(1.0, "Mixture head: the box dimensions' spread factor (like --rollout_width); 0 = the "
                              "chosen component's mean, no per-frame noise on the box."),
    "box_smoothing": Control(0.0, "Exponential smoothing of the sampled box: each frame the box moves only (1 - this) "
                                  "of the way to the sampled one (0 = none).", high=1.0, high_open=True,
                             high_why="1 would never move", calibrate="Box smoothing"),
    "coherence": Control(0.0, "Mixture head: correlation of each frame's sampling randomness with the last frame's "
                              "(0 = fresh every frame). Each frame is still sampled from the model's mixture, but "
                              "consecutive samples stay close, so the figure moves instead of jittering without "
                              f"being averaged into fewer poses. {_BAKED}", high=1.0, high_open=True,
                         high_why="1 would never move", calibrate="Coherence"),
    "beat_guidance": Control(0.0, "Music-conditioned mixture models: each frame is chosen among "
                                  "rollout.BEAT_DRAWS samples of the model's mixture, the more strongly the higher "
                                  "this, by how well its speed fits where the frame falls in the music's beat, as the "
                                  f"training data's speed does (0 = off: one sample). {_BAKED}", high=MAX_CONTROL),
    "box_in_picture": Control(False, "Keep the sampled stage box's centre inside the frame (and its height within the "
                                     "stage's limits), feeding it back as kept, so a dancer who wanders cannot walk "
                                     f"out of the picture (needs --rollout_box_dims=3). {_BAKED}"),
}
# The controls baked into an export's graph, with the defaults that sample as before they existed.
SAMPLING = {name: c.default for name, c in CONTROLS.items() if c.baked}
# The controls a calibration may vary, in the order its candidates combine them.
GRID = tuple(name for name, c in CONTROLS.items() if c.calibrate)


def bounds(name):
    """The allowed range of a number control in words: "0..1000", "[0, 1)" or ">= 0"."""
    c = CONTROLS[name]
    if c.high is None:
        return ">= 0"
    return f"[0, {c.high:g})" if c.high_open else f"0..{c.high:g}"


def problem(name, value, dim):
    """What is wrong with `value` for control `name` of a `dim`-wide model, in words; None when it is fine."""
    c = CONTROLS[name]
    if isinstance(c.default, bool):
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if isinstance(c.default, int):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < dim:
            return f"must be an integer in 0..{dim - 1} ({c.note.format(dim=dim)}), got {value!r}"
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        return f"must be a finite number >= 0, got {value!r}"
    if c.high is not None and not (value < c.high if c.high_open else value <= c.high):
        why = f" ({c.high_why})" if c.high_why else ""
        return f"must be {'<' if c.high_open else '<='} {c.high:g}{why}, got {float(value)}"
    return None
