"""The procedural soundtrack the embedded dancer dances to: a seeded song synthesised in numpy.

A 4/4 beat whose tempo changes from section to section (steps, some of them glides), with a
kick on every beat, a snare on beats 2 and 4, hi-hats on the eighths, a bass line following a
chord progression, and accents (a crash and a harder kick) on the first beat of every 4-bar
phrase and on a few random beats. Everything is laid out on the video's frame grid, so the
dancer can follow the same beats (`beat_position`) and accents (`accent_envelope`) it hears.
"""

import numpy as np

from tf_dance import music

BEATS_PER_BAR = 4
MIN_BPM, MAX_BPM = 85.0, 145.0
_SCALE = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor, semitones


def tempo_plan(frames, fps, seed):
    """BPM per video frame: sections of 4 to 8 bars, each at its own tempo; a third of the
    changes glide over a bar instead of stepping."""
    rng = np.random.default_rng([seed, 20])
    bpm = np.empty(frames)
    k, current = 0, rng.uniform(MIN_BPM, MAX_BPM)
    while k < frames:
        target = rng.uniform(MIN_BPM, MAX_BPM)
        glide = rng.uniform() < 1 / 3
        beats = BEATS_PER_BAR * int(rng.integers(4, 9))
        n = max(1, int(round(beats * 60.0 / target * fps)))
        values = np.full(n, target)
        if glide and k:
            ramp = min(n, int(round(BEATS_PER_BAR * 60.0 / target * fps)))
            values[:ramp] = np.linspace(current, target, ramp)
        bpm[k:k + n] = values[:frames - k]
        k, current = k + n, target
    return bpm


def beat_position(bpm, fps):
    """Beats elapsed at every frame time k / fps (the first beat on frame 0)."""
    return np.concatenate([[0.0], np.cumsum(np.asarray(bpm, np.float64) / (60.0 * fps))[:-1]])


def song(frames, fps, seed, bpm=None, sample_rate=music.SAMPLE_RATE):
    """A song of `frames / fps` seconds and its score on the frame grid.

    bpm: tempo per frame (default: `tempo_plan`). Returns dict(audio float32 [T], sample_rate,
    bpm [frames], beats [frames] (beat position at each frame), beat_times [K] seconds,
    accents bool [K], accent_envelope [frames] (1 on an accent, decaying over 0.35 s)).
    """
    bpm = tempo_plan(frames, fps, seed) if bpm is None else np.asarray(bpm, np.float64)
    if bpm.shape != (frames,) or not np.all(np.isfinite(bpm)) or bpm.min() <= 0:
        raise ValueError(f"bpm must be {frames} positive tempi, one per frame")
    rng = np.random.default_rng([seed, 21])
    position = beat_position(bpm, fps)
    times = np.arange(frames) / fps
    end = position[-1] + bpm[-1] / (60.0 * fps)
    beat_times = np.interp(np.arange(int(np.ceil(end))), position, times,
                           right=np.nan)
    beat_times = beat_times[np.isfinite(beat_times)]
    index = np.arange(len(beat_times))
    accents = (index % (4 * BEATS_PER_BAR) == 0) | (rng.uniform(size=len(index)) < 0.12)
    hits = beat_times[accents]
    last = np.searchsorted(hits, times, side="right") - 1
    envelope = np.where(last >= 0, np.exp(-(times - hits[np.maximum(last, 0)]) / 0.35), 0.0)

    total = int(np.ceil(frames / fps * sample_rate))
    audio = np.zeros(total + sample_rate, np.float32)
    sounds = _instruments(rng, sample_rate)
    root = 40 + int(rng.integers(0, 12))  # a MIDI note around E2
    progression = rng.choice(len(_SCALE), 4)
    half = np.interp(index + 0.5, position, times, right=np.nan)
    for k, t in enumerate(beat_times):
        bar = k // BEATS_PER_BAR
        accent = 1.0 if accents[k] else 0.0
        _add(audio, sounds["kick"] * (0.55 + 0.35 * accent), t, sample_rate)
        if k % BEATS_PER_BAR in (1, 3):
            _add(audio, sounds["snare"] * 0.35, t, sample_rate)
        _add(audio, sounds["hat"] * 0.12, t, sample_rate)
        if np.isfinite(half[k]):
            _add(audio, sounds["hat"] * 0.07, half[k], sample_rate)
        if accent:
            _add(audio, sounds["crash"] * 0.22, t, sample_rate)
        degree = progression[bar % 4] + (2 if k % BEATS_PER_BAR == 2 else 0)
        note = root + _SCALE[degree % len(_SCALE)] + 12 * (degree // len(_SCALE))
        _add(audio, _bass(440.0 * 2 ** ((note - 69) / 12), sample_rate) * 0.3, t, sample_rate)
    audio = audio[:total]
    audio *= 0.9 / max(1e-9, float(np.abs(audio).max()))
    return dict(audio=audio, sample_rate=sample_rate, bpm=bpm, beats=position,
                beat_times=beat_times, accents=accents, accent_envelope=envelope)


def _add(audio, sound, t, sample_rate):
    i = int(round(t * sample_rate))
    n = min(len(sound), len(audio) - i)
    if n > 0 and i >= 0:
        audio[i:i + n] += sound[:n]


def _instruments(rng, sample_rate):
    """One-shot samples: each song gets its own slightly different drum kit."""
    def t(seconds):
        return np.arange(int(seconds * sample_rate)) / sample_rate
    noise = np.random.default_rng(rng.integers(2 ** 31))
    k = t(0.3)
    low = rng.uniform(40, 55)
    kick = np.sin(2 * np.pi * (low * k + (120 - low) * 0.03 * (1 - np.exp(-k / 0.03)))) * np.exp(-k / 0.12)
    s = t(0.2)
    snare = (0.7 * noise.standard_normal(len(s)) * np.exp(-s / rng.uniform(0.05, 0.09))
             + 0.5 * np.sin(2 * np.pi * rng.uniform(170, 210) * s) * np.exp(-s / 0.05))
    h = t(0.06)
    hat = np.diff(noise.standard_normal(len(h) + 1)) * np.exp(-h / rng.uniform(0.015, 0.03))
    c = t(1.2)
    crash = np.diff(noise.standard_normal(len(c) + 1)) * np.exp(-c / 0.45)
    return {name: v.astype(np.float32) for name, v in
            dict(kick=kick, snare=snare, hat=hat, crash=crash).items()}


def _bass(freq, sample_rate, seconds=0.35):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = np.sin(2 * np.pi * freq * t) + 0.35 * np.sin(4 * np.pi * freq * t)
    return (tone * np.minimum(1.0, t / 0.005) * np.exp(-t / 0.15)).astype(np.float32)
