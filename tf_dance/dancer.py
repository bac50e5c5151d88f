"""The procedural "shadow dancer": the embedded stand-in for the paper's footage.

A white silhouette on black at 96x54, 24 fps by default: an articulated 2-D body whose joint
angles follow a seeded chain of dance moves with smooth cross-fades, varying tempo and
amplitude, drifting across the frame and changing size. It is drawn with anti-aliased signed
distances to tapered capsules, so every step is vectorised numpy. The joint angles (`poses`)
and the move of every frame (`moves`) come with the frames so later steps can be evaluated
against the truth.
"""

import numpy as np

from tf_dance import cli, data, music, soundtrack
from tf_dance.perlin import GradientNoise

# ---------------------------------------------------------------------------------------------
# Choreography: a seeded chain of moves, each a function of its own phase

MOVES = ("tpose", "sway", "arm_wave", "arms_up", "squat", "jump", "side_step", "kick", "turn",
         "shimmy")
# Angles in radians. Shoulders and hips: 0 hangs down, pi/2 points outwards, pi straight up.
# Elbows and knees bend relative to the upper limb. `facing` 1 is frontal, smaller is turned
# sideways (the silhouette narrows); `shift` (sideways) and `lift` (jump) are in body heights.
# `x` (pelvis, fraction of width) and `size` (standing height, fraction of frame height) are
# where the dancer finally is after drift and the keep-inside-the-frame correction.
POSE_NAMES = ("torso_lean", "head_tilt", "l_shoulder", "l_elbow", "r_shoulder", "r_elbow",
              "l_hip", "l_knee", "r_hip", "r_knee", "facing", "shift", "lift", "x", "size")
_MOVE_PARAMS = POSE_NAMES[:13]
_NEUTRAL = dict(torso_lean=0.0, head_tilt=0.0, l_shoulder=0.18, l_elbow=0.25, r_shoulder=0.18,
                r_elbow=0.25, l_hip=0.09, l_knee=0.06, r_hip=0.09, r_knee=0.06, facing=1.0,
                shift=0.0, lift=0.0)
_ANGLES = POSE_NAMES[:10]


def _tpose(p, a, side):
    s = np.sin(p)
    return dict(l_shoulder=1.54 + 0.03 * s, r_shoulder=1.54 - 0.03 * s, l_elbow=0.03 + 0 * p,
                r_elbow=0.03 + 0 * p, l_hip=0.12 + 0 * p, r_hip=0.12 + 0 * p, l_knee=0 * p,
                r_knee=0 * p)


def _sway(p, a, side):
    s = np.sin(p)
    return dict(torso_lean=0.13 * a * s, shift=0.08 * a * s, head_tilt=-0.06 * a * s,
                l_shoulder=0.25 + 0.12 * a * s, r_shoulder=0.25 - 0.12 * a * s,
                l_elbow=0.5 + 0 * p, r_elbow=0.5 + 0 * p,
                l_knee=0.12 * a * (1 + s), r_knee=0.12 * a * (1 - s))


def _arm_wave(p, a, side):
    up, down = ("r", "l") if side > 0 else ("l", "r")
    return {f"{up}_shoulder": 2.0 + 0.3 * a * np.sin(p),
            f"{up}_elbow": 0.5 + 0.5 * a * np.sin(p - 1.0),
            f"{down}_shoulder": 0.25 + 0 * p, f"{down}_elbow": 0.3 + 0 * p,
            "head_tilt": 0.08 * a * np.sin(p), "torso_lean": -0.05 * side * a + 0 * p}


def _arms_up(p, a, side):
    s, bounce = np.sin(p), 0.12 * a * (1 - np.cos(2 * p)) / 2
    return dict(l_shoulder=2.55 + 0.35 * a * s, r_shoulder=2.55 + 0.35 * a * s,
                l_elbow=0.35 - 0.3 * a * s, r_elbow=0.35 - 0.3 * a * s,
                l_knee=0.1 + bounce, r_knee=0.1 + bounce)


def _squat(p, a, side):
    s = a * (1 - np.cos(p)) / 2
    return dict(l_hip=0.1 + 0.75 * s, r_hip=0.1 + 0.75 * s, l_knee=1.5 * s, r_knee=1.5 * s,
                l_shoulder=0.3 + 1.1 * s, r_shoulder=0.3 + 1.1 * s,
                l_elbow=0.3 + 0 * p, r_elbow=0.3 + 0 * p)


def _jump(p, a, side):
    up, down = np.maximum(0, np.sin(p)), np.maximum(0, -np.sin(p))
    return dict(lift=0.13 * a * up, l_knee=0.1 + 0.9 * a * down, r_knee=0.1 + 0.9 * a * down,
                l_hip=0.1 + 0.45 * a * down, r_hip=0.1 + 0.45 * a * down,
                l_shoulder=0.3 + 2.3 * a * up, r_shoulder=0.3 + 2.3 * a * up,
                l_elbow=0.2 + 0 * p, r_elbow=0.2 + 0 * p)


def _side_step(p, a, side):
    s, c = np.sin(p), np.cos(p)
    return dict(shift=0.22 * a * s * side, torso_lean=0.06 * a * s * side,
                l_hip=0.1 + 0.35 * a * np.maximum(0, c), r_hip=0.1 + 0.35 * a * np.maximum(0, -c),
                l_knee=0.1 + 0.2 * a * np.abs(s), r_knee=0.1 + 0.2 * a * np.abs(s),
                l_shoulder=0.35 + 0.3 * a * s, r_shoulder=0.35 - 0.3 * a * s,
                l_elbow=0.6 + 0 * p, r_elbow=0.6 + 0 * p)


def _kick(p, a, side):
    kl, kr = np.maximum(0, np.sin(p)) ** 2, np.maximum(0, -np.sin(p)) ** 2
    return dict(l_hip=0.1 + 1.15 * a * kl, r_hip=0.1 + 1.15 * a * kr,
                l_knee=0.15 * (1 - kl), r_knee=0.15 * (1 - kr),
                l_shoulder=1.45 + 0 * p, r_shoulder=1.45 + 0 * p,
                l_elbow=0.1 + 0 * p, r_elbow=0.1 + 0 * p, torso_lean=0.18 * a * (kl - kr))


def _turn(p, a, side):
    return dict(facing=1.0 - 0.7 * np.minimum(a, 1.0) * (1 - np.cos(p)) / 2,
                l_shoulder=0.9 + 0.25 * np.sin(2 * p), r_shoulder=0.9 - 0.25 * np.sin(2 * p),
                l_elbow=0.9 + 0 * p, r_elbow=0.9 + 0 * p)


def _shimmy(p, a, side):
    s = np.sin(2 * p)
    return dict(torso_lean=0.07 * a * s, shift=0.04 * a * s, head_tilt=0.05 * a * s,
                l_shoulder=0.55 + 0.3 * a * s, r_shoulder=0.55 - 0.3 * a * s,
                l_elbow=1.5 + 0 * p, r_elbow=1.5 + 0 * p,
                l_knee=0.2 + 0.12 * a * s, r_knee=0.2 - 0.12 * a * s)


_MOVE_FNS = dict(tpose=_tpose, sway=_sway, arm_wave=_arm_wave, arms_up=_arms_up, squat=_squat,
                 jump=_jump, side_step=_side_step, kick=_kick, turn=_turn, shimmy=_shimmy)
# Cycles per second at tempo 1: big whole-body moves are slower than small ones.
_MOVE_HZ = dict(tpose=0.3, sway=0.8, arm_wave=1.0, arms_up=0.7, squat=0.5, jump=0.5,
                side_step=0.7, kick=0.5, turn=0.35, shimmy=0.9)


# With music: (phase offset, harmonic) that put each move's extremes (where it slows and turns:
# its kinematic beats) on the beat; a harmonic of 2 turns twice per cycle of its phase.
_MOVE_BEAT = dict(tpose=(np.pi / 2, 1), sway=(np.pi / 2, 1), arm_wave=(np.pi / 2 + 0.5, 1),
                  arms_up=(np.pi / 2, 1), squat=(0.0, 1), jump=(np.pi / 2, 1),
                  side_step=(np.pi / 2, 1), kick=(np.pi / 2, 2), turn=(np.pi / 4, 2),
                  shimmy=(np.pi / 4, 2))


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def choreography(frames, seed=0, fps=24.0, song=None):
    """Move parameters `[frames, 13]` (the first 13 of POSE_NAMES) and the move of each frame.

    Moves follow a seeded Markov chain (the first is a T-pose, as real footage often starts),
    each lasting 1.6-4.2 s at its own tempo, amplitude and side; a global tempo wobble varies
    the speed within a move, and neighbouring moves cross-fade over half a second.

    song: a `soundtrack.song` to dance to. Each move then starts on a bar line and lasts one or
    two bars; its phase runs with the song's beats (1/2, 1/4 or 1/8 cycle per beat, the nearest
    to the move's own pace), placed so that its extremes fall on beats; accents swell it.
    """
    rng = np.random.default_rng([seed, 1] if song is None else [seed, 8])
    noise = GradientNoise([seed, 2])
    seconds = np.arange(frames) / fps
    fade = max(2, int(round(0.5 * fps)))

    starts, kinds = [0], [MOVES.index("tpose")]
    if song is None:
        musical_time = np.concatenate([[0.0], np.cumsum(1.0 + 0.2 * noise.noise1(seconds / 8.0))[:-1]])
        musical_time /= fps
        while True:
            length = max(fade + 1, int(round(rng.uniform(1.6, 4.2) * fps)))
            if starts[-1] + length >= frames:
                break
            starts.append(starts[-1] + length)
            kinds.append(_next_move(rng, kinds[-1]))
    else:
        beats, swell = song["beats"], 1.0 + 0.35 * song["accent_envelope"]
        bar_starts = np.searchsorted(beats, np.arange(0.0, beats[-1] + 1e-9, 4.0))
        bar = 0
        while True:
            bar += int(rng.integers(1, 3))
            if bar >= len(bar_starts) or bar_starts[bar] + fade >= frames:
                break
            starts.append(int(bar_starts[bar]))
            kinds.append(_next_move(rng, kinds[-1]))
    bounds = starts + [frames]

    params = np.zeros((frames, len(_MOVE_PARAMS)))
    moves = np.zeros(frames, np.int32)
    for s, kind in enumerate(kinds):
        name = MOVES[kind]
        tempo = _MOVE_HZ[name] * rng.uniform(0.7, 1.4)
        amp, side = rng.uniform(0.65, 1.1), rng.choice([-1, 1])
        begin, end = bounds[s], bounds[s + 1]
        lo, hi = max(0, begin - fade // 2), min(frames, end + fade - fade // 2)
        t = np.arange(lo, hi)
        weight = np.ones(hi - lo)
        if s > 0:
            weight *= _smoothstep((t - begin + fade / 2) / fade)
        if s < len(kinds) - 1:
            weight *= _smoothstep((end - t + fade / 2) / fade)
        if song is None:
            phase = 2 * np.pi * tempo * (musical_time[lo:hi] - musical_time[begin])
        else:
            offset, harmonic = _MOVE_BEAT[name]
            ladder = 1.0 / (2 * harmonic) / np.array([1.0, 2.0, 4.0])
            cycles = ladder[np.argmin(np.abs(np.log2(ladder * song["bpm"][begin] / 60.0 / tempo)))]
            phase = 2 * np.pi * cycles * (beats[lo:hi] - np.round(beats[begin])) + offset
            amp = amp * swell[lo:hi]
        pose = dict(_NEUTRAL, **_MOVE_FNS[name](phase, amp, side))
        params[lo:hi] += weight[:, None] * np.stack(
            [np.broadcast_to(pose[k], phase.shape) for k in _MOVE_PARAMS], axis=1)
        moves[begin:end] = kind

    for j in range(len(_ANGLES)):
        params[:, j] += 0.04 * noise.noise1(seconds / 1.5 + 17.0 * (j + 1))
    return params, moves


def _next_move(rng, previous):
    weights = np.array([0.3 if m == "tpose" else 1.0 for m in MOVES])
    weights[previous] = 0.0
    return int(rng.choice(len(MOVES), p=weights / weights.sum()))


# ---------------------------------------------------------------------------------------------
# Body: forward kinematics to tapered capsules, placement in the frame, rendering

_BODY = dict(thigh=0.245, shin=0.24, torso=0.29, neck=0.05, head=0.072, shoulder=0.1, hip=0.055,
             upper_arm=0.16, forearm=0.15, foot=0.06)
# (radius at start, radius at end) of each capsule, in standing heights.
_RADII = np.array([(0.072, 0.072), (0.032, 0.032), (0.085, 0.075), (0.07, 0.085), (0.042, 0.042),
                   (0.062, 0.062), (0.036, 0.03), (0.03, 0.024), (0.036, 0.03), (0.03, 0.024),
                   (0.055, 0.04), (0.038, 0.027), (0.055, 0.04), (0.038, 0.027), (0.024, 0.02),
                   (0.024, 0.02)])


def _body(seed):
    """Per-seed proportions (+-5%), normalised to a standing height of 1."""
    rng = np.random.default_rng([seed, 3])
    body = {k: v * rng.uniform(0.95, 1.05) for k, v in _BODY.items()}
    standing = body["thigh"] + body["shin"] + 0.02 + body["torso"] + body["neck"] + 2 * body["head"]
    return {k: v / standing for k, v in body.items()}, _RADII / standing


def _limb(origin, angle, length, mirror):
    return origin + length * np.stack([mirror * np.sin(angle), -np.cos(angle)], axis=-1)


def _capsules(params, body):
    """Capsule endpoints `[N, 16, 2, 2]` in standing heights: x right, y up, feet on y = 0."""
    p = {k: params[:, i] for i, k in enumerate(_MOVE_PARAMS)}
    lean = p["torso_lean"]
    up = np.stack([np.sin(lean), np.cos(lean)], -1)
    across = np.stack([np.cos(lean), -np.sin(lean)], -1)
    pelvis = np.zeros_like(up)
    neck = up * body["torso"]
    chest = up * body["torso"] * 0.62
    head_dir = np.stack([np.sin(lean + p["head_tilt"]), np.cos(lean + p["head_tilt"])], -1)
    head = neck + head_dir * (body["neck"] + body["head"])
    shoulder_l = neck - across * body["shoulder"] - up * 0.035
    shoulder_r = neck + across * body["shoulder"] - up * 0.035
    # Arms hang from the leaning torso: rotate their angles by the lean, mirrored per side.
    elbow_l = _limb(shoulder_l, p["l_shoulder"] + lean, body["upper_arm"], -1)
    wrist_l = _limb(elbow_l, p["l_shoulder"] + p["l_elbow"] + lean, body["forearm"], -1)
    elbow_r = _limb(shoulder_r, p["r_shoulder"] - lean, body["upper_arm"], 1)
    wrist_r = _limb(elbow_r, p["r_shoulder"] + p["r_elbow"] - lean, body["forearm"], 1)
    hip_l = pelvis - [body["hip"], 0.0]
    hip_r = pelvis + [body["hip"], 0.0]
    knee_l = _limb(hip_l, p["l_hip"], body["thigh"], -1)
    ankle_l = _limb(knee_l, p["l_hip"] - p["l_knee"], body["shin"], -1)
    knee_r = _limb(hip_r, p["r_hip"], body["thigh"], 1)
    ankle_r = _limb(knee_r, p["r_hip"] - p["r_knee"], body["shin"], 1)
    toe_l = ankle_l - [body["foot"], 0.0]
    toe_r = ankle_r + [body["foot"], 0.0]
    segments = [(head, head), (neck, head), (chest, neck), (pelvis, chest),
                (shoulder_l, shoulder_r), (hip_l, hip_r), (shoulder_l, elbow_l),
                (elbow_l, wrist_l), (shoulder_r, elbow_r), (elbow_r, wrist_r), (hip_l, knee_l),
                (knee_l, ankle_l), (hip_r, knee_r), (knee_r, ankle_r), (ankle_l, toe_l),
                (ankle_r, toe_r)]
    caps = np.stack([np.stack(s, axis=1) for s in segments], axis=1)
    caps[..., 0] *= p["facing"][:, None, None]
    ground = np.minimum(ankle_l[:, 1], ankle_r[:, 1]) - 0.025
    caps[..., 1] += (p["lift"] - ground)[:, None, None]
    return caps


def _place(caps, radii, params, seed, fps, height, width, margin):
    """Capsules in pixels `[N, 16, 2, 2]`, radii `[N, 16, 2]`, and the final `x`, `size`.

    Slow noise drives the drift across the frame and the size (a smaller dancer stands a little
    higher, as if further away).
    """
    noise = GradientNoise([seed, 4])
    seconds = np.arange(len(caps)) / fps
    size = height * (0.65 + 0.09 * noise.noise1(seconds / 12.0 + 0.5))
    centre = width * (0.5 + 0.34 * noise.noise1(seconds / 10.0 + 100.5))
    return _fit(caps, radii, params, size, centre, height, width, margin)


def _fit(caps, radii, params, size, centre, height, width, margin):
    """`_place`'s result for a given size and centre (pixels) per frame; radii `[16, 2]` or `[N, 16, 2]`.

    A smaller dancer stands a little higher, as if further away, never below the margin.
    Frames that would poke out of the margins are scaled down about the feet, then shifted
    sideways, so limbs are never cut.
    """
    radii = radii if radii.ndim == 3 else radii[None]
    ground = np.minimum(height - margin, height - margin - 0.4 * (0.74 * height - size))
    x = centre + params[:, _MOVE_PARAMS.index("shift")] * size

    def extents(scale):
        lo = (caps - radii[..., None]) * scale[:, None, None, None]
        hi = (caps + radii[..., None]) * scale[:, None, None, None]
        return lo[..., 0].min((1, 2)), hi[..., 0].max((1, 2)), hi[..., 1].max((1, 2))

    left, right, top = extents(size)
    fit = np.minimum(1.0, (ground - margin) / top)
    fit = np.minimum(fit, (width - 2 * margin) / (right - left))
    size = size * fit
    left, right = left * fit, right * fit
    x = x + np.maximum(0.0, margin - (x + left)) - np.maximum(0.0, x + right - (width - margin))

    px = np.empty_like(caps)
    px[..., 0] = x[:, None, None] + caps[..., 0] * size[:, None, None]
    px[..., 1] = ground[:, None, None] - caps[..., 1] * size[:, None, None]
    return px, radii * size[:, None, None], x / width, size / height


def render(caps, radii, height, width, progress=None, chunk=128):
    """Anti-aliased union of tapered capsules → uint8 `[N, H, W]`.

    Coverage of a pixel is `clip(0.5 - signed distance, 0, 1)`: a one-pixel ramp at each edge,
    the cheap equivalent of supersampling, computed for `chunk` frames at a time.
    """
    n = len(caps)
    out = np.empty((n, height, width), np.uint8)
    gx = (np.arange(width, dtype=np.float32) + 0.5)[None, None, :]
    gy = (np.arange(height, dtype=np.float32) + 0.5)[None, :, None]
    caps, radii = caps.astype(np.float32), radii.astype(np.float32)
    for c0 in range(0, n, chunk):
        dist = None
        for k in range(caps.shape[1]):
            (ax, ay), (bx, by) = caps[c0:c0 + chunk, k, 0].T, caps[c0:c0 + chunk, k, 1].T
            ra, rb = radii[c0:c0 + chunk, k, 0], radii[c0:c0 + chunk, k, 1]
            dx, dy = (bx - ax)[:, None, None], (by - ay)[:, None, None]
            inv = 1.0 / np.maximum(dx * dx + dy * dy, 1e-6)
            rx, ry = gx - ax[:, None, None], gy - ay[:, None, None]
            t = np.clip((rx * dx) * inv + (ry * dy) * inv, 0.0, 1.0)
            qx, qy = rx - t * dx, ry - t * dy
            d = np.sqrt(qx * qx + qy * qy) - (ra[:, None, None] + t * (rb - ra)[:, None, None])
            dist = d if dist is None else np.minimum(dist, d, out=dist)
        out[c0:c0 + chunk] = np.rint(np.clip(0.5 - dist, 0.0, 1.0) * 255.0)
        if progress is not None:
            progress.update(min(n, c0 + chunk))
    return out


def _with_music(result, song, fps):
    """Adds the song and its features (computed as `prepare_video` computes them from a video's
    soundtrack) to a dancer's result."""
    result.update(audio=song["audio"], sample_rate=song["sample_rate"], bpm=song["bpm"],
                  beat_times=song["beat_times"], music_names=np.array(music.NAMES),
                  music=music.features(song["audio"], fps, len(song["bpm"]), song["sample_rate"]))
    return result


def dancer(frames, seed=0, fps=24.0, height=data.HEIGHT, width=data.WIDTH, channels=1, margin=2,
           progress=False, music=False, bpm=None):
    """The procedural dancer: dict(frames uint8 [N,H,W,C], poses float32 [N,15], moves [N]).

    music: dance to a procedural song (`soundtrack.song`; bpm: its tempo per frame, which
    implies music); the result then also holds `audio` float32 [T] at `sample_rate`, the true
    `bpm` [N] and `beat_times` [K], and `music` float32 [N, F] with `music_names` [F].
    """
    song = soundtrack.song(frames, fps, seed, bpm) if music or bpm is not None else None
    params, moves = choreography(frames, seed, fps, song)
    body, radii = _body(seed)
    caps, px_radii, x, size = _place(_capsules(params, body), radii, params, seed, fps, height,
                                     width, margin)
    bar = cli.progress(frames, unit="frame", enabled=progress)
    frames_ = render(caps, px_radii, height, width, progress=bar)[..., None]
    if channels == 3:
        frames_ = np.repeat(frames_, 3, axis=-1)
    poses = np.concatenate([params, x[:, None], size[:, None]], axis=1).astype(np.float32)
    result = dict(frames=frames_, poses=poses, moves=moves)
    return result if song is None else _with_music(result, song, fps)


# ---------------------------------------------------------------------------------------------
# Footage-like: several clips with cuts, each its own dancer, travelling, turning, near and far

_TORSO = (2, 3)  # the chest and belly capsules: they narrow to the body's depth in profile
_PROFILE_DEPTH = 0.6  # torso depth / torso width


def _build(rng):
    """Proportions of one clip's dancer: limbs, widths and thickness vary by up to a third."""
    legs, arms = rng.uniform(0.85, 1.15, 2)
    scale = dict(thigh=legs, shin=legs, upper_arm=arms, forearm=arms, foot=legs,
                 torso=rng.uniform(0.88, 1.12), neck=rng.uniform(0.8, 1.2),
                 head=rng.uniform(0.88, 1.12), shoulder=rng.uniform(0.8, 1.25),
                 hip=rng.uniform(0.8, 1.3))
    body = {k: v * scale[k] for k, v in _BODY.items()}
    standing = body["thigh"] + body["shin"] + 0.02 + body["torso"] + body["neck"] + 2 * body["head"]
    thickness = np.full(len(_RADII), rng.uniform(0.75, 1.35))
    thickness[list(_TORSO)] *= rng.uniform(0.85, 1.2)
    return {k: v / standing for k, v in body.items()}, _RADII * thickness[:, None] / standing


def _ease(knots_t, knots_v, n):
    """Values at frames 0..n-1 that ease (smoothstep) from knot to knot; flat past the last."""
    t = np.arange(n)
    seg = np.clip(np.searchsorted(knots_t, t, side="right") - 1, 0, len(knots_t) - 2)
    t0, t1 = knots_t[seg], knots_t[seg + 1]
    u = _smoothstep((t - t0) / np.maximum(t1 - t0, 1e-9))
    return knots_v[seg] + u * (knots_v[seg + 1] - knots_v[seg])


def _travel(n, rng, fps, beats=None):
    """Centre (fraction of the width), yaw (radians) and nearness per frame: dwell, move, ...

    Most moves cross to the other side of the frame (3-6 s per width, turned towards profile on
    the way), coming nearer or going further (nearness alternates above and below 1: the
    apparent size); some are short steps; while dwelling the dancer faces the camera, turns
    partly or shows its back. Yaw 0 faces the camera, pi/2 is profile facing right (-pi/2
    left), pi the back. beats: the song's beat position per frame; every start and end of a
    turn or a crossing then falls on a beat.
    """
    times, centres, yaws, near = [0.0], [rng.uniform(0.0, 1.0)], [0.0], [rng.uniform(0.8, 1.2)]
    while times[-1] < n:
        dwell = rng.uniform(0.5, 3.0) * fps
        facing = rng.choice([0.0, rng.choice([-1, 1]) * rng.uniform(0.4, 1.3), np.pi],
                            p=[0.55, 0.3, 0.15])
        turn = min(0.7 * fps, dwell / 3)
        times += [times[-1] + turn, times[-1] + dwell - turn, times[-1] + dwell]
        centres += [centres[-1]] * 3
        yaws += [facing, facing, 0.0]
        near += [near[-1]] * 3
        here = centres[-1]
        there = (rng.uniform(0.0, 0.2) if here > 0.5 else rng.uniform(0.8, 1.0))
        if rng.uniform() < 0.25:
            there = float(np.clip(here + rng.uniform(-0.3, 0.3), 0.0, 1.0))
        cross = max(1.0, abs(there - here) * rng.uniform(3.0, 6.0) * fps)
        turn = min(0.6 * fps, cross / 3)
        profile = rng.uniform(1.0, 1.3) * (1 if there > here else -1)
        times += [times[-1] + turn, times[-1] + cross - turn, times[-1] + cross]
        centres += [here + (there - here) * t for t in (0.1, 0.9, 1.0)]
        yaws += [profile, profile, 0.0]
        after = rng.uniform(0.78, 0.95) if near[-1] > 1.0 else rng.uniform(1.05, 1.22)
        near += [near[-1] + (after - near[-1]) * t for t in (0.1, 0.9, 1.0)]
    times = np.array(times)
    if beats is not None:
        times = _on_beats(times, beats)
    return tuple(_ease(times, np.array(v), n) for v in (centres, yaws, near))


def _on_beats(times, beats):
    """Knot times (frames) moved to whole beats, each at least one beat after the one before;
    past the clip the beats go on at its last tempo."""
    frames = np.arange(len(beats), dtype=np.float64)
    rate = beats[-1] - beats[-2] if len(beats) > 1 else 1.0
    b = np.round(np.interp(times, frames, beats) + np.maximum(times - frames[-1], 0) * rate)
    b = np.maximum.accumulate(b - np.arange(len(b))) + np.arange(len(b))
    return np.interp(b, beats, frames) + np.maximum(b - beats[-1], 0) / rate


# Where each joint sits among the capsule endpoints `[segment, end]` of `_capsules`.
_JOINT_SLOTS = dict(knee_l=[(10, 1), (11, 0)], ankle_l=[(11, 1), (14, 0)], toe_l=[(14, 1)],
                    knee_r=[(12, 1), (13, 0)], ankle_r=[(13, 1), (15, 0)], toe_r=[(15, 1)],
                    elbow_l=[(6, 1), (7, 0)], wrist_l=[(7, 1)], elbow_r=[(8, 1), (9, 0)],
                    wrist_r=[(9, 1)])


def _gait(caps, body, yaw, step):
    """Walking seen from the side: legs and arms swing forward and back, feet point ahead.

    The 2-D body lives in the frontal plane; a swing in depth shows on screen as `sin(yaw)`
    times its depth, so it appears as the dancer turns to profile and vanishes facing front.
    step: gait phase (radians, one cycle per two steps) and swing amplitude per frame.
    """
    phase, swing = step
    depth = {}
    for side, sign in (("l", 1.0), ("r", -1.0)):
        leg = sign * swing * np.sin(phase)
        depth[f"knee_{side}"] = body["thigh"] * np.sin(leg)
        depth[f"ankle_{side}"] = depth[f"knee_{side}"] + body["shin"] * np.sin(
            leg - 0.8 * swing * np.maximum(0.0, np.cos(phase) * sign))
        depth[f"toe_{side}"] = depth[f"ankle_{side}"] + 1.5 * body["foot"]
        arm = -0.7 * leg
        depth[f"elbow_{side}"] = body["upper_arm"] * np.sin(arm)
        depth[f"wrist_{side}"] = depth[f"elbow_{side}"] + body["forearm"] * np.sin(arm + 0.3 * swing)
    caps = caps.copy()
    for joint, slots in _JOINT_SLOTS.items():
        for seg, end in slots:
            caps[:, seg, end, 0] += np.sin(yaw) * depth[joint]
    return caps


def _steps(centre, size, width, fps):
    """Gait phase and swing amplitude from how fast the dancer crosses the frame."""
    speed = np.abs(np.gradient(centre)) * width / size  # body heights per frame
    phase = 2 * np.pi * np.cumsum(speed) / 0.8  # a stride of two steps covers 0.8 body heights
    return phase, 0.45 * np.clip(speed * fps / 0.5, 0.0, 1.0)


def _clip_lengths(frames, clips, fps, rng):
    shortest = int(round(2.0 * fps))
    if frames < clips * shortest:
        raise cli.UserError(f"{frames} frames are too few for {clips} clips: each needs at least "
                            f"{shortest} frames (2 s at {fps:g} fps)")
    share = rng.uniform(0.5, 1.5, clips)
    extra = np.floor(share / share.sum() * (frames - clips * shortest)).astype(int)
    extra[: frames - clips * shortest - extra.sum()] += 1
    return shortest + extra


def footage(frames, clips, seed=0, fps=24.0, height=data.HEIGHT, width=data.WIDTH, channels=1,
            margin=2, progress=False, music=False):
    """The dancer as footage: `clips` clips with cuts between them, `frames` frames in all.

    Each clip is its own dancer (limb lengths, widths, thickness and apparent height of its
    own) with its own choreography, who travels across the whole width of the frame, turns
    towards profile (the silhouette narrows: limbs foreshorten across, the torso to its depth)
    and comes nearer and goes further (apparent size). Returns `dancer`'s dict plus
    `clips` int32 [N], the clip of every frame. music: every clip dances to a song of its own,
    the songs following each other as the clips do (the result as `dancer`'s with music).
    """
    lengths = _clip_lengths(frames, clips, fps, np.random.default_rng([seed, 5]))
    facing = _MOVE_PARAMS.index("facing")
    all_caps, all_radii, all_params, all_moves, all_x, all_size = [], [], [], [], [], []
    songs = []
    for k, n in enumerate(lengths):
        rng = np.random.default_rng([seed, 6, k])
        clip_seed = int(rng.integers(2 ** 31))
        song = soundtrack.song(n, fps, clip_seed) if music else None
        songs.append(song)
        params, moves = choreography(n, clip_seed, fps, song)
        centre, yaw, near = _travel(n, rng, fps, None if song is None else song["beats"])
        params[:, facing] *= np.cos(yaw)
        body, radii = _build(rng)
        radii = np.repeat(radii[None], n, axis=0)
        radii[:, list(_TORSO)] *= (_PROFILE_DEPTH + (1 - _PROFILE_DEPTH)
                                   * np.abs(params[:, facing]))[:, None, None]
        noise = GradientNoise([clip_seed, 4])
        seconds = np.arange(n) / fps
        size = height * rng.uniform(0.5, 0.85) * near * (1 + 0.05 * noise.noise1(seconds / 3.0 + 0.5))
        phase, swing = _steps(centre, size, width, fps)
        if song is not None:
            phase = np.pi * song["beats"] + np.pi / 2  # a step on every beat
        caps = _gait(_capsules(params, body), body, yaw, (phase, swing))
        caps[..., 1] -= np.minimum(0.0, (caps[..., 1] - radii).min((1, 2)))[:, None, None]  # thick feet
        caps, px_radii, x, size = _fit(caps, radii, params, size, width * centre, height, width,
                                       margin)
        for lst, item in zip((all_caps, all_radii, all_params, all_moves, all_x, all_size),
                             (caps, px_radii, params, moves, x, size)):
            lst.append(item)
    params = np.concatenate(all_params)
    bar = cli.progress(frames, unit="frame", enabled=progress)
    frames_ = render(np.concatenate(all_caps), np.concatenate(all_radii), height, width,
                     progress=bar)[..., None]
    if channels == 3:
        frames_ = np.repeat(frames_, 3, axis=-1)
    poses = np.concatenate([params, np.concatenate(all_x)[:, None],
                            np.concatenate(all_size)[:, None]], axis=1).astype(np.float32)
    result = dict(frames=frames_, poses=poses, moves=np.concatenate(all_moves),
                  clips=np.repeat(np.arange(clips, dtype=np.int32), lengths))
    return result if not music else _joined(result, songs, fps)


def _joined(result, songs, fps):
    """The clips' songs one after another, each cut to its clip, with their features."""
    audio, beat_times, features, at = [], [], [], 0.0
    for song in songs:
        n = len(song["bpm"])
        audio.append(song["audio"][:int(round(n / fps * song["sample_rate"]))])
        beat_times.append(song["beat_times"] + at)
        features.append(music.features(song["audio"], fps, n, song["sample_rate"]))
        at += len(audio[-1]) / song["sample_rate"]
    result.update(audio=np.concatenate(audio), sample_rate=songs[0]["sample_rate"],
                  bpm=np.concatenate([s["bpm"] for s in songs]), beat_times=np.concatenate(beat_times),
                  music=np.concatenate(features), music_names=np.array(music.NAMES))
    return result
