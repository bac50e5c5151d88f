"""Music features per video frame: what a dance can follow, computed from a mono waveform.

The soundtrack is decoded by ffmpeg to 16 kHz mono float32 on a pipe, then analysed in plain
numpy at 100 envelope samples per second: an onset-strength envelope (spectral flux of the log
power spectrum), a local tempo (autocorrelation of the envelope over 8 s windows with a prior
around 120 BPM, as in Ellis's beat tracker), beats (dynamic programming over the envelope with
that local period) and log power in a few frequency bands. Each video frame `k` (at `k / fps`
seconds from the clip's start) gets one row of `NAMES`:

- `onset`: the strongest onset strength (dB of spectral flux) within the frame;
- `beat`: 1 on the frame nearest each beat, else 0;
- `beat_sin`, `beat_cos`: the phase between the surrounding beats (0 on a beat; `beat_frames`
  recovers beat times between frames from it), both 0 where no beats were found;
- `tempo`: the local tempo in beats per minute (0 in silence);
- `band_*`: log10 of the mean power in each band (relative to a full-scale sine).

Values are in these natural units; a model standardises them as it needs.
"""

import os
import subprocess
import tempfile
import wave

import numpy as np

from tf_dance import cli, data, video

SAMPLE_RATE = 16000
RATE = 100  # envelope samples per second
_HOP = SAMPLE_RATE // RATE
_N_FFT = 1024
_BAND_EDGES = (0, 150, 400, 1000, 2500, 6000, 8000)
BAND_NAMES = tuple(f"band_{lo}_{hi}hz" for lo, hi in zip(_BAND_EDGES[:-1], _BAND_EDGES[1:]))
NAMES = ("onset", "beat", "beat_sin", "beat_cos", "tempo") + BAND_NAMES
MIN_BPM, MAX_BPM, PRIOR_BPM = 50.0, 240.0, 120.0
_FLOOR = 1e-8  # -80 dB below a full-scale sine
_CHUNK = 4096
_LEAD = 0.015  # s: the flux of a centred window peaks this much before a sharp onset


def check_waveform(waveform, sample_rate):
    """float32 `[T]` finite samples, or `cli.UserError`."""
    y = np.asarray(waveform)
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.number):
        raise cli.UserError(f"a waveform must be a non-empty 1-d array of samples, got {y.dtype} {y.shape}")
    if not (np.isfinite(sample_rate) and sample_rate > 0):
        raise cli.UserError(f"sample rate must be positive, got {sample_rate}")
    y = y.astype(np.float32)
    if not np.all(np.isfinite(y)):
        raise cli.UserError("the waveform contains NaN or inf")
    return y


def _resample(y, sample_rate):
    if sample_rate == SAMPLE_RATE:
        return y
    n = int(round(len(y) * SAMPLE_RATE / sample_rate))
    return np.interp(np.arange(n) * (sample_rate / SAMPLE_RATE), np.arange(len(y)), y).astype(np.float32)


def _spectra(y):
    """Onset envelope `[T]` and band log powers `[T, bands]`, one row per `_HOP` samples."""
    peak = float(np.max(np.abs(y)))
    y = y / peak if peak > 0 else y
    padded = np.pad(y, (_N_FFT // 2, _N_FFT // 2))
    count = len(y) // _HOP + 1
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP][:count]
    window = np.hanning(_N_FFT).astype(np.float32)
    scale = (window.sum() / 2) ** 2  # power of a full-scale sine's peak bin
    freqs = np.fft.rfftfreq(_N_FFT, 1.0 / SAMPLE_RATE)
    band_of = np.clip(np.searchsorted(_BAND_EDGES, freqs, side="right") - 1, 0, len(BAND_NAMES) - 1)
    members = np.eye(len(BAND_NAMES), dtype=np.float32)[band_of]
    members /= members.sum(0)
    flux, bands, last = [], [], None
    for c0 in range(0, len(frames), _CHUNK):
        power = np.abs(np.fft.rfft(frames[c0:c0 + _CHUNK] * window, axis=1)) ** 2 / scale
        level = 10 * np.log10(np.maximum(power, _FLOOR))
        before = np.concatenate([level[:1] if last is None else last, level[:-1]])
        flux.append(np.maximum(0.0, level - before).mean(1))
        bands.append(np.log10(np.maximum(power @ members, _FLOOR)))
        last = level[-1:]
    return np.concatenate(flux).astype(np.float32), np.concatenate(bands).astype(np.float32)


def _prior(bpm):
    return np.exp(-0.5 * np.log2(bpm / PRIOR_BPM) ** 2)


def _tempo_path(weighted, lags, octave_cost=4.0):
    """The lag index per window that best explains the autocorrelations while changing tempo
    rarely (Viterbi): one jump of an octave costs `octave_cost` nats, so a song's tempo does not
    flip between the beat and its half or double from window to window."""
    loglik = np.log(np.maximum(weighted / np.maximum(weighted.max(1, keepdims=True), 1e-30), 1e-3))
    octaves = np.log2(lags)
    jump = octave_cost * np.abs(octaves[:, None] - octaves[None, :])
    score, back = loglik[0], np.zeros(weighted.shape, np.int64)
    for w in range(1, len(weighted)):
        total = score[:, None] - jump
        back[w] = np.argmax(total, axis=0)
        score = total[back[w], np.arange(len(lags))] + loglik[w]
    path = np.zeros(len(weighted), np.int64)
    path[-1] = int(np.argmax(score))
    for w in range(len(weighted) - 1, 0, -1):
        path[w - 1] = back[w, path[w]]
    return path


def local_tempo(envelope, window_s=8.0, step_s=0.5):
    """Tempo in BPM at every envelope sample (0 where the envelope is flat): the autocorrelation
    peak of the envelope over `window_s` around it, weighted by a one-octave prior at 120 BPM."""
    e = envelope.astype(np.float64)
    n, width, step = len(e), int(window_s * RATE), int(step_s * RATE)
    detrended = e - np.convolve(np.pad(e, (RATE // 2, RATE - RATE // 2 - 1), mode="edge"),
                                np.ones(RATE) / RATE, mode="valid")
    centres = np.arange(0, n, step)
    padded = np.pad(detrended, (width // 2, width - width // 2))
    segments = np.lib.stride_tricks.sliding_window_view(padded, width)[centres] * np.hanning(width)
    size = 1 << int(np.ceil(np.log2(2 * width)))
    spectrum = np.fft.rfft(segments, size, axis=1)
    ac = np.fft.irfft(spectrum * spectrum.conj(), size, axis=1)[:, :width]
    lags = np.arange(int(60 * RATE / MAX_BPM), int(60 * RATE / MIN_BPM) + 2)
    weighted = np.maximum(ac[:, lags], 0.0) * _prior(60.0 * RATE / lags)
    best = np.clip(_tempo_path(weighted, lags), 1, len(lags) - 2)
    rows = np.arange(len(centres))
    a, b, c = (weighted[rows, best + d] for d in (-1, 0, 1))
    shift = np.where(a - 2 * b + c < 0, 0.5 * (a - c) / np.minimum(a - 2 * b + c, -1e-12), 0.0)
    bpm = 60.0 * RATE / (lags[best] + np.clip(shift, -0.5, 0.5))
    log_bpm = np.log(bpm)
    smooth = np.array([np.median(log_bpm[max(0, i - 2):i + 3]) for i in range(len(log_bpm))])
    silent = ac[:, 0] <= 1e-9 * max(1e-30, float(ac[:, 0].max()))
    tempo = np.where(silent, 0.0, np.exp(smooth))
    return np.interp(np.arange(n), centres, tempo)


def track_beats(envelope, tempo, tightness=100.0):
    """Beat times (envelope samples) by dynamic programming: beats on strong onsets, spaced by
    the local period (Ellis 2007, with the period varying along the song)."""
    std = float(envelope.std())
    if std <= 0 or not np.any(tempo > 0):
        return np.zeros(0, np.int64)
    local = envelope / std
    period = 60.0 * RATE / np.where(tempo > 0, tempo, PRIOR_BPM)
    score = local.astype(np.float64).copy()
    back = np.full(len(local), -1)
    for t in range(len(local)):
        lo, hi = t - int(round(2 * period[t])), t - int(round(period[t] / 2))
        if hi < 0:
            continue
        prev = np.arange(max(lo, 0), hi + 1)
        cand = score[prev] - tightness * np.log((t - prev) / period[t]) ** 2
        k = int(np.argmax(cand))
        if cand[k] > 0:
            score[t] += cand[k]
            back[t] = prev[k]
    tail = min(len(local), int(round(period[-1])))
    t = len(local) - tail + int(np.argmax(score[-tail:]))
    beats = []
    while t >= 0:
        beats.append(t)
        t = back[t]
    beats = np.array(beats[::-1], np.int64)
    strength = np.array([local[max(0, b - 2):b + 3].max() for b in beats])
    strong = np.flatnonzero(strength >= 0.5 * np.sqrt(np.mean(strength ** 2)))
    return beats[strong[0]:strong[-1] + 1] if len(strong) else beats[:0]


def analyse(waveform, sample_rate=SAMPLE_RATE):
    """`dict(envelope [T], bands [T, B], tempo [T] BPM, beats seconds [K])`, T at `RATE` per second."""
    y = _resample(check_waveform(waveform, sample_rate), sample_rate)
    envelope, bands = _spectra(y)
    tempo = local_tempo(envelope)
    return dict(envelope=envelope, bands=bands, tempo=tempo,
                beats=track_beats(envelope, tempo) / RATE + _LEAD)


def features(waveform, fps, frames=None, sample_rate=SAMPLE_RATE):
    """float32 `[frames, len(NAMES)]`: one row per video frame at `fps` (frame k at k / fps s).

    frames: how many video frames (default: as many as the waveform lasts); a waveform shorter
    than that is padded with silence, a longer one cut.
    """
    if not (np.isfinite(fps) and fps > 0):
        raise cli.UserError(f"fps must be positive, got {fps}")
    y = check_waveform(waveform, sample_rate)
    if frames is None:
        frames = max(1, int(round(len(y) / sample_rate * fps)))
    need = int(np.ceil((frames + 1) / fps * sample_rate))
    y = np.pad(y[:need], (0, max(0, need - len(y))))
    a = analyse(y, sample_rate)
    n = len(a["envelope"])
    times = np.arange(frames) / fps
    edges = np.clip(np.round((np.arange(frames + 1) - 0.5) / fps * RATE).astype(int), 0, n - 1)
    edges[-1] = max(edges[-1], edges[-2] + 1)
    hi = np.maximum(edges[1:], edges[:-1] + 1)
    onset = np.array([a["envelope"][lo:h].max() for lo, h in zip(edges[:-1], hi)])
    bands = np.stack([a["bands"][lo:h].mean(0) for lo, h in zip(edges[:-1], hi)])
    beats = a["beats"]
    beat = np.zeros(frames)
    on = np.round(beats * fps).astype(int)
    beat[on[(on >= 0) & (on < frames)]] = 1.0
    sin = cos = np.zeros(frames)
    if len(beats) >= 2:
        k = np.clip(np.searchsorted(beats, times, side="right") - 1, 0, len(beats) - 2)
        phase = (times - beats[k]) / (beats[k + 1] - beats[k])
        sin, cos = np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)
    tempo = np.interp(times * RATE, np.arange(n), a["tempo"])
    return np.column_stack([onset, beat, sin, cos, tempo, bands]).astype(np.float32)


def beat_phase(music, names):
    """(the beat phase of every frame in radians, 0 on a beat; whether a beat was found there) from a
    dataset's `music` features (`beat_sin`, `beat_cos`, both 0 where no beats were found)."""
    names = list(np.asarray(names))
    music = np.asarray(music, np.float64)
    sin, cos = music[:, names.index("beat_sin")], music[:, names.index("beat_cos")]
    return np.arctan2(sin, cos), np.hypot(sin, cos) > 0.5


def beat_frames(music, names):
    """Beat times in frames (float: frame k at k) from a dataset's `music` features: where the
    beat phase (`beat_phase`) wraps round, interpolated between the two frames."""
    phase = np.mod(beat_phase(music, names)[0] / (2 * np.pi), 1.0)
    k = np.flatnonzero(np.diff(phase) < -0.5)
    step = phase[k + 1] + 1.0 - phase[k]
    return k + (1.0 - phase[k]) / step


# ---------------------------------------------------------------------------------------------
# Audio files: decoding with ffmpeg, writing wav, muxing a soundtrack into a video


def read_audio(path, start=0.0, duration=None, sample_rate=SAMPLE_RATE):
    """The first audio stream of `path` (any file ffmpeg reads) as float32 mono `[T]`, from `start`
    for `duration` seconds; None if the file has no audio stream. `cli.UserError` if unreadable."""
    cli.require_file(path, "audio")
    cmd = [video._ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error"]
    if start:
        cmd += ["-ss", repr(float(start))]
    if duration is not None:
        cmd += ["-t", repr(float(duration))]
    cmd += ["-i", "file:" + os.path.abspath(path), "-map", "0:a:0?", "-vn", "-sn", "-dn", "-ac", "1",
            "-ar", str(int(sample_rate)), "-f", "f32le", "pipe:1"]
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    message = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0 and "does not contain any stream" in message:
        return None  # the optional map `0:a:0?` found no audio stream
    if proc.returncode != 0:
        raise cli.UserError(f"cannot decode the audio of {path}: {video._last_line(message, first=True)}")
    y = np.frombuffer(proc.stdout, np.float32, len(proc.stdout) // 4)
    if not y.size:
        return None
    if not np.all(np.isfinite(y)):
        raise cli.UserError(f"the audio of {path} decodes to NaN or inf samples")
    return y.copy()


def clip_music(path, fps, frames, start=0.0):
    """`features` of the soundtrack of a clip decoded from `start` for `frames` video frames, or
    None when the file has no audio stream."""
    y = read_audio(path, start=start, duration=(frames + 1) / fps)
    return None if y is None else features(y, fps, frames)


def soundtracks(paths, clips, fps, start=0.0):
    """`(dict(music, music_names), silent)` for a dataset made of the videos `paths`, whose frames
    belong to `clips`: each clip's features from its own audio, decoded from `start` over its
    frames. A video without audio (its name is in `silent`) gets the features of silence; when
    none has audio the dict is empty."""
    found, silent = [], []
    for path, (begin, end) in zip(paths, data.clip_bounds(clips)):
        clip = clip_music(path, fps, end - begin, start)
        if clip is None:
            silent.append(os.path.basename(path))
            clip = features(np.zeros(1, np.float32), fps, end - begin)
        found.append(clip)
    if len(silent) == len(paths):
        return {}, silent
    return dict(music=np.concatenate(found), music_names=np.array(NAMES)), silent


def write_wav(path, waveform, sample_rate=SAMPLE_RATE):
    """16-bit mono PCM wav (standard library `wave`), written atomically."""
    y = check_waveform(waveform, sample_rate)
    pcm = np.round(np.clip(y, -1.0, 1.0) * 32767).astype("<i2")
    with cli.atomic_output(path) as tmp, wave.open(tmp, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.tobytes())
    return path


def mux(video_path, waveform, sample_rate=SAMPLE_RATE, out=None):
    """The mp4 at `video_path` with `waveform` as its soundtrack (AAC), written atomically to
    `out` (default: over `video_path`); the video stream is copied, not re-encoded."""
    out_path = out or video_path
    with tempfile.TemporaryDirectory() as tmp:
        wav = write_wav(os.path.join(tmp, "soundtrack.wav"), waveform, sample_rate)
        with cli.atomic_output(out_path) as tmp_out:
            proc = subprocess.run(
                [video._ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                 "-i", "file:" + os.path.abspath(video_path), "-i", "file:" + wav, "-map", "0:v:0",
                 "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "96k", "-shortest",
                 "-movflags", "+faststart", "file:" + os.path.abspath(tmp_out)],
                capture_output=True, stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                raise cli.UserError(f"ffmpeg could not add the soundtrack to {out_path}: "
                                    f"{video._last_line(proc.stderr.decode('utf-8', 'replace'), first=True)}")
    return out_path
