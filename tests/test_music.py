"""Music in the data: per-frame features, soundtracks through prepare_video, the dancer's song,
and the beat alignment and movement tempo measures."""

import hashlib
import os
import subprocess

import numpy as np
import pytest

from tf_dance import cli, dancer, data, metrics, music, soundtrack, video

FPS = 24.0


def _click_track(bpm, seconds, offset=0.37, sample_rate=music.SAMPLE_RATE):
    """Short 1 kHz clicks at `bpm` from `offset` s: (waveform, click times in s)."""
    y = np.zeros(int(seconds * sample_rate), np.float32)
    t = np.arange(int(0.02 * sample_rate)) / sample_rate
    click = (np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.004)).astype(np.float32)
    times = np.arange(offset, seconds - 0.05, 60.0 / bpm)
    for s in times:
        i = int(round(s * sample_rate))
        y[i:i + len(click)] += click[:len(y) - i]
    return y, times


def _nearest_gap(a, b):
    b = np.sort(b)
    i = np.clip(np.searchsorted(b, a), 1, len(b) - 1)
    return np.minimum(np.abs(a - b[i - 1]), np.abs(a - b[i]))


# ---- features of known signals


@pytest.mark.parametrize("bpm", [96.0, 137.0])
def test_click_track_gives_its_tempo_and_beats_on_the_clicks(bpm):
    y, clicks = _click_track(bpm, 12.0)
    features = music.features(y, FPS)
    assert features.dtype == np.float32 and features.shape == (int(12 * FPS), len(music.NAMES))
    tempo = np.median(features[:, music.NAMES.index("tempo")])
    assert abs(tempo / bpm - 1) < 0.03
    beats = music.analyse(y)["beats"]
    assert _nearest_gap(beats, clicks).max() < 0.02  # seconds
    assert len(beats) >= len(clicks) - 1
    from_features = music.beat_frames(features, music.NAMES) / FPS
    assert _nearest_gap(from_features[(from_features > 1) & (from_features < 11)], clicks).max() < 0.03
    flags = np.flatnonzero(features[:, music.NAMES.index("beat")])
    assert len(flags) >= len(clicks) - 1 and _nearest_gap(flags, clicks * FPS).max() <= 1


def test_silence_has_no_beats_or_tempo_and_features_have_any_length():
    silent = music.features(np.zeros(8000, np.float32), FPS, frames=30)
    assert silent.shape == (30, len(music.NAMES)) and np.all(np.isfinite(silent))
    for name in ("onset", "beat", "beat_sin", "beat_cos", "tempo"):
        assert not silent[:, music.NAMES.index(name)].any(), name
    assert len(music.beat_frames(silent, music.NAMES)) == 0
    y, _ = _click_track(120.0, 3.0)
    assert music.features(y, FPS, frames=200).shape == (200, len(music.NAMES))  # padded with silence
    assert music.features(y, 10.0, frames=5).shape == (5, len(music.NAMES))  # cut
    resampled = music.features(np.repeat(y, 2), FPS, sample_rate=2 * music.SAMPLE_RATE)
    assert resampled.shape == (72, len(music.NAMES))


@pytest.mark.parametrize("waveform, kwargs, message", [
    (np.zeros((2, 100)), {}, "1-d array"),
    (np.zeros(0), {}, "1-d array"),
    (np.array([0.0, np.nan]), {}, "NaN or inf"),
    (np.zeros(100), dict(sample_rate=0), "sample rate must be positive"),
    (np.zeros(100), dict(fps=0.0), "fps must be positive"),
])
def test_bad_waveforms_give_one_clear_error(waveform, kwargs, message):
    fps = kwargs.pop("fps", FPS)
    with pytest.raises(cli.UserError, match=message):
        music.features(waveform, fps, **kwargs)


def test_bad_audio_files_give_one_error_line(tmp_path):
    text = tmp_path / "song.wav"
    text.write_text("not audio\n")
    for path, message in ((text, "cannot decode the audio of"), (tmp_path / "none.wav", "audio not found")):
        with pytest.raises(cli.UserError, match=message) as e:
            music.read_audio(str(path))
        assert "\n" not in str(e.value)


def test_wav_round_trip(tmp_path):
    y, _ = _click_track(120.0, 1.0)
    path = music.write_wav(str(tmp_path / "c.wav"), 0.5 * y)
    back = music.read_audio(path)
    assert back.shape == y.shape and np.abs(back - 0.5 * y).max() < 1e-3


# ---- datasets: save/load validation and prepare_video


def test_dataset_music_is_validated(tmp_path):
    frames = np.zeros((4, 8, 8, 1), np.uint8)
    names = np.array(["a", "b"])
    path = data.save_dataset(str(tmp_path / "m.npz"), frames, 10.0, music=np.ones((4, 2)), music_names=names)
    _, _, extras = data.load_dataset(path)
    assert extras["music"].dtype == np.float32 and extras["music"].shape == (4, 2)
    assert list(extras["music_names"]) == ["a", "b"]
    for kwargs, message in [
        (dict(music=np.ones((4, 2))), "go together"),
        (dict(music_names=names), "go together"),
        (dict(music=np.ones((3, 2)), music_names=names), "one row per frame"),
        (dict(music=np.ones((4, 2), np.int32), music_names=names), "must be float"),
        (dict(music=np.ones((4, 3)), music_names=names), "3 strings"),
        (dict(music=np.full((4, 2), np.nan), music_names=names), "NaN or inf"),
    ]:
        with pytest.raises(cli.UserError, match=message):
            data.save_dataset(str(tmp_path / "bad.npz"), frames, 10.0, **kwargs)
    np.savez(tmp_path / "raw.npz", frames=frames, fps=10.0, music=np.ones((5, 2), np.float32),
             music_names=names)
    with pytest.raises(cli.UserError, match="one row per frame"):
        data.load_dataset(str(tmp_path / "raw.npz"))
    assert not os.path.exists(tmp_path / "bad.npz")


@pytest.fixture(scope="module")
def sound_video(tiny_video, tmp_path_factory):
    """The tiny dancer's 10 s mp4 with a 120 BPM click track (first click at 0.37 s) muxed in."""
    folder = tmp_path_factory.mktemp("sound")
    wav = music.write_wav(str(folder / "clicks.wav"), _click_track(120.0, 10.0)[0])
    path = str(folder / "dancer_sound.mp4")
    subprocess.run([video._ffmpeg(), "-nostdin", "-v", "error", "-i", tiny_video, "-i", wav, "-map", "0:v",
                    "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-shortest", path], check=True)
    return path


def test_prepare_video_keeps_the_soundtrack_aligned_with_the_frames(tmp_path, run_module, sound_video):
    out = tmp_path / "p.npz"
    r = run_module("tf_dance.prepare_video", f"--video={sound_video}", f"--out={out}", "--fps=12",
                   "--start=2", "--max_frames=60", "--noprogress")
    assert r.returncode == 0, r.stderr
    assert "with music" in r.stdout and "no audio" not in r.stderr
    frames, fps, extras = data.load_dataset(str(out))
    assert len(frames) == 60 and extras["music"].shape == (60, len(music.NAMES))
    assert list(extras["music_names"]) == list(music.NAMES)
    tempo = extras["music"][:, music.NAMES.index("tempo")]
    assert abs(np.median(tempo) / 120 - 1) < 0.03
    beats = music.beat_frames(extras["music"], extras["music_names"]) / fps + 2.0  # source seconds
    clicks = np.arange(0.37, 10.0, 0.5)
    assert len(beats) >= 8 and _nearest_gap(beats, clicks).max() < 0.05
    r = run_module("tf_dance.prepare_video", f"--video={sound_video}", f"--out={out}", "--nomusic",
                   "--noprogress")
    assert r.returncode == 0, r.stderr
    assert "music" not in data.load_dataset(str(out))[2]


def test_a_video_without_audio_still_works_and_says_so_once(tmp_path, run_module, tiny_video, sound_video):
    out = tmp_path / "p.npz"
    r = run_module("tf_dance.prepare_video", f"--video={tiny_video}", f"--out={out}", "--noprogress")
    assert r.returncode == 0, r.stderr
    assert (r.stdout + r.stderr).count("no audio track") == 1, r.stderr
    assert "the dataset has no music features" in r.stderr
    frames, _, extras = data.load_dataset(str(out))
    assert len(frames) == 240 and "music" not in extras and "music_names" not in extras
    # Beside a clip with sound, the silent clip's rows are those of silence.
    r = run_module("tf_dance.prepare_video", f"--video={sound_video}", f"--video={tiny_video}",
                   f"--out={out}", "--noprogress")
    assert r.returncode == 0, r.stderr
    assert (r.stdout + r.stderr).count("no audio track") == 1 and "those of silence" in r.stderr
    frames, _, extras = data.load_dataset(str(out))
    beat = extras["music"][:, music.NAMES.index("beat")]
    assert extras["music"].shape == (480, len(music.NAMES))
    assert beat[:240].sum() >= 15 and not beat[240:].any()


# ---- the dancer's song


def _digest(result):
    h = hashlib.sha256()
    for key in sorted(result):
        h.update(key.encode())
        h.update(np.ascontiguousarray(result[key]).tobytes())
    return h.hexdigest()[:16]


def test_without_music_the_dancer_is_unchanged():
    """Digests of the dancer and its footage-like mode as they were before music existed."""
    assert _digest(dancer.dancer(48, seed=3)) == "b521c363bdc12339"
    assert _digest(dancer.footage(100, 2, seed=1)) == "2d61c47482015443"


@pytest.fixture(scope="module")
def dance_with_music():
    return dancer.dancer(int(60 * FPS), seed=1, music=True)


def test_the_song_has_its_tempo_changes_accents_and_features(dance_with_music):
    d = dance_with_music
    n = len(d["frames"])
    assert d["audio"].dtype == np.float32 and len(d["audio"]) == int(np.ceil(n / FPS * d["sample_rate"]))
    assert np.abs(d["audio"]).max() <= 1.0 and d["music"].shape == (n, len(music.NAMES))
    assert soundtrack.MIN_BPM <= d["bpm"].min() and d["bpm"].max() <= soundtrack.MAX_BPM
    assert len(np.unique(np.round(d["bpm"]))) >= 3  # the tempo changes
    measured = d["music"][:, music.NAMES.index("tempo")]
    assert np.median(np.abs(measured / d["bpm"] - 1)) < 0.03
    heard = music.beat_frames(d["music"], d["music_names"]) / FPS
    assert np.mean(_nearest_gap(heard, d["beat_times"]) < 0.03) > 0.9
    again = dancer.dancer(48, seed=1, music=True)
    np.testing.assert_array_equal(again["audio"], dancer.dancer(48, seed=1, music=True)["audio"])


def test_the_dancer_moves_on_the_beat_of_its_song(dance_with_music):
    d = dance_with_music
    kinematic = metrics.kinematic_beats(d["frames"], FPS)
    heard = music.beat_frames(d["music"], d["music_names"])
    aligned = metrics.beat_alignment(kinematic, heard, FPS)
    half_beat = heard + 0.5 * FPS * 60.0 / np.median(d["bpm"])
    other = dancer.dancer(len(d["frames"]), seed=7, music=True)
    other_song = metrics.beat_alignment(kinematic, music.beat_frames(other["music"], other["music_names"]), FPS)
    shuffled = np.random.default_rng(0).permutation(len(d["frames"]))
    unordered = metrics.beat_alignment(metrics.kinematic_beats(d["frames"][shuffled], FPS), heard, FPS)
    assert aligned >= 0.6
    assert metrics.beat_alignment(kinematic, half_beat, FPS) <= aligned - 0.3
    assert other_song <= aligned - 0.2 and unordered <= aligned - 0.2


def test_the_dancers_movement_tempo_follows_a_tempo_step():
    n = int(60 * FPS)
    bpm = np.where(np.arange(n) < n // 2, 110.0, 132.0)  # +20%
    d = dancer.dancer(n, seed=2, bpm=bpm)
    before = metrics.movement_tempo(d["frames"][:n // 2], FPS)
    after = metrics.movement_tempo(d["frames"][n // 2:], FPS)
    assert abs(before / 110 - 1) < 0.05 and abs(after / 132 - 1) < 0.05
    assert abs((after / before) / 1.2 - 1) < 0.1


def test_footage_clips_have_songs_of_their_own_and_dance_to_them():
    d = dancer.footage(int(40 * FPS), 2, seed=2, music=True)
    n = len(d["frames"])
    assert d["music"].shape == (n, len(music.NAMES)) and len(d["bpm"]) == n
    assert abs(len(d["audio"]) - n / FPS * d["sample_rate"]) <= 2
    first = np.flatnonzero(d["clips"] == 1)[0]
    assert np.isclose(d["beat_times"][d["beat_times"] >= first / FPS][0], first / FPS, atol=1e-3)
    kinematic = metrics.kinematic_beats(d["frames"], FPS, d["clips"])
    assert np.all(d["clips"][np.floor(kinematic).astype(int)] == d["clips"][np.ceil(kinematic).astype(int)])
    other = dancer.footage(int(40 * FPS), 2, seed=12, music=True)
    aligned = metrics.beat_alignment(kinematic, music.beat_frames(d["music"], d["music_names"]), FPS)
    assert aligned >= 0.1 + metrics.beat_alignment(
        kinematic, music.beat_frames(other["music"], other["music_names"]), FPS)


def test_synthesize_music_writes_features_and_a_video_with_sound(tmp_path, run_module):
    out, mp4 = tmp_path / "m.npz", tmp_path / "m.mp4"
    r = run_module("tf_dance.synthesize", "--music", "--frames=96", "--seed=3", f"--out={out}",
                   f"--video={mp4}", "--noprogress")
    assert r.returncode == 0, r.stderr
    frames, _, extras = data.load_dataset(str(out))
    expected = dancer.dancer(96, seed=3, music=True)
    np.testing.assert_array_equal(frames, expected["frames"])
    np.testing.assert_array_equal(extras["music"], expected["music"])
    sound = music.read_audio(str(mp4))
    assert sound is not None and abs(len(sound) / music.SAMPLE_RATE - 4.0) < 0.1
    assert video.read_video(str(mp4), progress=False)[0].shape[0] == 96


@pytest.mark.parametrize("args, message", [
    (["--kind=perlin", "--music"], "--music applies to --kind=dancer only"),
    (["--music", "--video=OUT.gif"], "--music needs an .mp4 --video"),
])
def test_synthesize_bad_music_flags_fail_cleanly(tmp_path, run_module, fails_cleanly, args, message):
    args = [a.replace("OUT", str(tmp_path / "x")) for a in args]
    fails_cleanly(run_module("tf_dance.synthesize", "--frames=10", f"--out={tmp_path / 'x.npz'}", *args),
                  message)
    assert os.listdir(tmp_path) == []


# ---- the measures on known signals


def test_beat_alignment_and_kinematic_beats_on_known_signals():
    assert metrics.beat_alignment([10, 20, 31, 45], [10, 20, 30, 40], fps=10.0) == 0.75
    assert np.isnan(metrics.beat_alignment([], [1.0], 10.0))
    t = np.arange(200) / 20.0
    swing = np.sin(2 * np.pi * 1.0 * t)[:, None]  # turns twice a second
    beats = metrics.kinematic_beats(swing, 20.0)
    np.testing.assert_allclose(beats[1:-1] / 20.0 % 0.5, 0.25, atol=0.03)
    assert abs(metrics.movement_tempo(swing, 20.0) - 120.0) < 2
    assert np.any(np.abs(beats - 94.5) < 1)
    split = metrics.kinematic_beats(swing, 20.0, np.repeat([0, 1], [95, 105]))  # a cut at a turn
    assert not np.any(np.abs(split - 95) < 1.4) and len(split) == len(beats) - 1
