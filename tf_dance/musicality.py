"""How well a dance follows its music (beyond the paper): beat alignment and tempo following.

Beat alignment is the dance-generation literature's beat alignment score: the share of the dance's
kinematic beats (local minima of its latent speed, `metrics.kinematic_beats`) within 0.1 s of a
music beat (the beats `music.features` found in the song, `music.beat_frames`). It is measured for
the data (its own latents against its own soundtrack), for a music-conditioned rollout on a song it
never heard, and for an unconditioned model's rollout "on" the same song (what chance alignment
gives a dance of the same style), with where in the beat those kinematic beats fall (`beat_phases`), which
says whether a dance slows down on the beat, off it, or anywhere. Tempo following: a song whose tempo steps
up by 20% and then down by 20% from a base tempo (`tempo_steps`); the dance's movement tempo
(`metrics.movement_tempo`) in each section, divided by its tempo in the base section, should be 1.2 and 0.8.
"""

import numpy as np

from tf_dance import data, music, soundtrack

ALIGNMENT_GOAL = 0.8        # a conditioned rollout's beat alignment: at least this times the data's
TEMPO_STEP = 0.2            # the tempo-follow song's steps: up and down by this fraction
TEMPO_FOLLOW_GOAL = 0.10    # the dance's tempo ratio within this fraction of the song's
SETTLE_S = 2.0              # seconds after each tempo change left out of the movement tempo
PHASE_BINS = 8              # where in the beat a dance slows down: in eighths of the beat
BEAT_HARMONICS = 2          # `beat_speed`: a slow-down per beat and one per half beat


def alignment(latents, features, names, fps, clips=None):
    """Beat alignment of a dance `[T, D]` against music features `[T, F]` (nan without beats)."""
    from tf_dance import metrics  # Keras (its stage measures): not imported by the scripts reading the seeds here
    return metrics.beat_alignment(metrics.kinematic_beats(latents, fps, clips), music.beat_frames(features, names), fps)


def beat_phases(latents, features, names, fps, clips=None, bins=PHASE_BINS):
    """The share of a dance's kinematic beats in each of `bins` equal parts of the music's beat, the first
    starting on the beat: a dance that slows down on the beat piles up in the first and last parts, one deaf to
    it spreads evenly. Zeros without kinematic beats between two music beats."""
    from tf_dance import metrics
    beats = music.beat_frames(features, names)
    kinematic = metrics.kinematic_beats(latents, fps, clips)
    if len(beats) < 2:
        return [0.0] * bins
    kinematic = kinematic[(kinematic >= beats[0]) & (kinematic < beats[-1])]
    k = np.searchsorted(beats, kinematic, side="right") - 1
    part = np.minimum(((kinematic - beats[k]) / (beats[k + 1] - beats[k]) * bins).astype(int), bins - 1)
    counts = np.bincount(part, minlength=bins)
    return (counts / max(int(counts.sum()), 1)).tolist()


def beat_speed(latents, features, names, clips=None, harmonics=BEAT_HARMONICS):
    """How a dance's speed rises and falls over the music's beat: the first `harmonics` Fourier
    coefficients `[cos 1, sin 1, cos 2, sin 2, ...]` of its standardised log speed (latents standardised per
    dimension) against the beat phase of the frame each step arrives at, over the frames with beats.
    The data's is what a music-conditioned rollout's `beat_guidance` steers towards: a dance that slows
    on the beat has a negative first cosine. Zeros without beats."""
    z = np.asarray(latents, np.float64)
    z = (z - z.mean(0)) / np.maximum(z.std(0), 1e-8)
    step = np.log(np.linalg.norm(np.diff(z, axis=0), axis=1) + 1e-6)
    phase, keep = (v[1:] for v in music.beat_phase(features, names))
    clips = data.check_clips(clips, len(z), numbered=False)
    keep &= clips[1:] == clips[:-1]
    if keep.sum() < 2 or step[keep].std() == 0:
        return [0.0] * (2 * harmonics)
    step = (step[keep] - step[keep].mean()) / step[keep].std()
    phase = phase[keep]
    return [float(2 * np.mean(step * f(h * phase))) for h in range(1, harmonics + 1) for f in (np.cos, np.sin)]


def tempo_steps(frames, fps, base_bpm, step=TEMPO_STEP):
    """BPM per frame: a third at `base_bpm`, a third at (1 + step) x, a third at (1 - step) x."""
    third = frames // 3
    bpm = np.full(frames, base_bpm * (1 - step))
    bpm[:third], bpm[third:2 * third] = base_bpm, base_bpm * (1 + step)
    return bpm


def tempo_song(frames, fps, seed, base_bpm):
    """`soundtrack.song` at `tempo_steps` and its features: dict(audio, bpm, features, sections)."""
    bpm = tempo_steps(frames, fps, base_bpm)
    song = soundtrack.song(frames, fps, seed, bpm=bpm)
    third = frames // 3
    return dict(audio=song["audio"], bpm=bpm, features=music.features(song["audio"], fps, frames),
                sections=[(0, third), (third, 2 * third), (2 * third, frames)])


def tempo_follow(latents, fps, sections, bpm):
    """dict(tempi: the dance's movement tempo per section, ratios: the up and down sections' over the base's,
    expected: the song's ratios, error: the largest |ratio / expected - 1|)."""
    from tf_dance import metrics
    settle = int(round(SETTLE_S * fps))
    tempi = [metrics.movement_tempo(latents[a + settle:b], fps) for a, b in sections]
    song = [float(np.median(bpm[a:b])) for a, b in sections]
    ratios = [t / tempi[0] for t in tempi[1:]]
    expected = [s / song[0] for s in song[1:]]
    error = max(abs(r / e - 1) for r, e in zip(ratios, expected))
    return dict(tempi=tempi, song_tempi=song, ratios=ratios, expected=expected, error=float(error))


HELD_OUT_SEED = 10_000      # a procedural song from this seed on (plus the run's seed) is one no training heard
TEMPO_SECONDS = 90.0        # the tempo-follow song's length: three 30-second sections
TEMPO_BPM = 100.0           # its base tempo: it steps to 120 and 80 BPM (80 is below every dancer song's tempi)


def held_out_song(frames, fps, seed=0):
    """A procedural song no training heard (`HELD_OUT_SEED` + seed): dict(audio, features)."""
    song = soundtrack.song(frames, fps, HELD_OUT_SEED + seed)
    return dict(audio=song["audio"], features=music.features(song["audio"], fps, frames))


def measure(roll, fps, song, train=None, train_music=None, clips=None, unconditioned=None, tempo_bpm=TEMPO_BPM,
            seed=0, label="the song", dance=None):
    """The music measures and goals of a conditioned model (`metrics.json`'s "music" block).

    roll(features [T, F]) -> its dance `[T, D]` to them; song: the features it dances to; train, train_music: the
    data's latents and music (their alignment is the reference); unconditioned(frames) -> an unconditioned
    model's dance of that length (or None); tempo_bpm: the tempo-follow song's base (None: not measured);
    dance: `roll(song)` when the caller has it already.
    Returns dict(alignment, data_alignment, unconditioned_alignment, tempo_follow, goals, song, beat_phase: the
    `beat_phases` of the rollout, the data and the unconditioned dance (None where not measured))."""
    names = music.NAMES
    dance = roll(song) if dance is None else dance
    free = None if unconditioned is None else unconditioned(len(song))
    out = dict(song=label, alignment=alignment(dance, song, names, fps),
               data_alignment=None if train_music is None else alignment(train, train_music, names, fps, clips),
               unconditioned_alignment=None if free is None else alignment(free, song, names, fps),
               tempo_follow=None,
               beat_phase=dict(rollout=beat_phases(dance, song, names, fps),
                               data=None if train_music is None else beat_phases(train, train_music, names, fps,
                                                                                 clips),
                               unconditioned=None if free is None else beat_phases(free, song, names, fps)))
    if tempo_bpm:
        steps = tempo_song(int(round(TEMPO_SECONDS * fps)), fps, HELD_OUT_SEED + 1 + seed, tempo_bpm)
        out["tempo_follow"] = tempo_follow(roll(steps["features"]), fps, steps["sections"], steps["bpm"])
    out["goals"] = goals(out["alignment"], out["data_alignment"], out["unconditioned_alignment"], out["tempo_follow"])
    return out


def goals(conditioned, data, unconditioned=None, follow=None):
    """Pass/fail of the music goals: beat alignment >= ALIGNMENT_GOAL x the data's (None without the data's) and
    above the unconditioned model's (when measured), tempo following within TEMPO_FOLLOW_GOAL (when measured)."""
    passed = None if data is None else bool(conditioned >= ALIGNMENT_GOAL * data and
                                           (unconditioned is None or conditioned > unconditioned))
    out = {"beat_alignment": dict(value=conditioned, data=data, unconditioned=unconditioned, passed=passed)}
    if follow is not None:
        out["tempo_follow"] = dict(value=follow["error"], ratios=follow["ratios"], expected=follow["expected"],
                                   passed=bool(follow["error"] <= TEMPO_FOLLOW_GOAL))
    return out
