"""The evaluation report: metrics.json, report.md and the paper's figures as PNGs (no flags).

`evaluate_dance(...)` is what `python -m tf_dance.evaluate` runs once it has a rollout. The
numbers come from `metrics.Reference`; the pictures are the paper's ways of looking:
Figure 2 (every 4th decoded frame), Figure 5 (the average decoded frame, which is all a
collapsed model shows), Figure 7 (motion over time against the data's band: a freeze is a
line that drops to the floor), plus pose coverage and novelty histograms. Plots are drawn
with PIL. The whole directory is written atomically.
"""

import json
import os
import time

import numpy as np
from PIL import Image, ImageDraw

from tf_dance import cli, data, metrics, video

STRIP_FRAMES = 128       # Figure 2 / 7 strips: every 4th of 128 frames = 32 tiles
AVERAGE_FRAMES = 2000    # Figure 5 averages at most this many evenly spaced decoded frames
COLOURS = [(220, 60, 40), (40, 110, 220), (30, 160, 80), (200, 140, 0), (150, 60, 200), (0, 160, 170)]
DATA_COLOUR = (120, 120, 120)


# ---------------------------------------------------------------------------------------------
# Plots with PIL


def _ticks(lo, hi, n=5):
    span = hi - lo if hi > lo else 1.0
    step = 10 ** np.floor(np.log10(span / n))
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= n:
            step *= mult
            break
    return np.arange(np.ceil(lo / step) * step, hi + 1e-9 * span, step)


def _fmt(v):
    v = float(v) + 0.0  # no "-0"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


class Plot:
    """A minimal line/bar chart on a PIL canvas: axes, ticks, labels, legend."""

    def __init__(self, xlim, ylim, title, xlabel, ylabel, size=(760, 340)):
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image, "RGBA")  # RGBA fills blend (translucent spans)
        self.box = (76, 30, size[0] - 16, size[1] - 44)
        self.xlim, self.ylim = xlim, (ylim[0], ylim[1] if ylim[1] > ylim[0] else ylim[0] + 1.0)
        self.legend = []
        font = video.font(12)
        x0, y0, x1, y1 = self.box
        self.draw.text((x0, 8), title, fill="black", font=video.font(14))
        self.draw.text(((x0 + x1) // 2, y1 + 26), xlabel, fill="black", font=font, anchor="mt")
        label = Image.new("RGB", (y1 - y0, 16), "white")
        ImageDraw.Draw(label).text(((y1 - y0) // 2, 8), ylabel, fill="black", font=font, anchor="mm")
        self.image.paste(label.rotate(90, expand=True), (4, y0))
        for t in _ticks(*self.xlim):
            x = self.px(t, self.ylim[0])[0]
            self.draw.line([(x, y1), (x, y1 + 4)], fill="black")
            self.draw.text((x, y1 + 6), _fmt(t), fill="black", font=font, anchor="mt")
        for t in _ticks(*self.ylim):
            y = self.px(self.xlim[0], t)[1]
            self.draw.line([(x0 - 4, y), (x1, y)], fill=(235, 235, 235))
            self.draw.text((x0 - 6, y), _fmt(t), fill="black", font=font, anchor="rm")
        self.draw.rectangle(self.box, outline="black")

    def px(self, x, y):
        x0, y0, x1, y1 = self.box
        fx = (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0] or 1.0)
        fy = (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
        return x0 + fx * (x1 - x0), y1 - np.clip(fy, -0.02, 1.02) * (y1 - y0)

    def band(self, lo, hi, colour, label):
        (a, top), (b, bottom) = self.px(self.xlim[0], hi), self.px(self.xlim[1], lo)
        self.draw.rectangle([a + 1, top, b - 1, bottom], fill=colour)
        self.legend.append((label, colour))

    def vspan(self, x0, x1, colour, label):
        (a, top), (b, bottom) = self.px(x0, self.ylim[1]), self.px(min(x1, self.xlim[1]), self.ylim[0])
        self.draw.rectangle([a, top + 1, max(a, b), bottom - 1], fill=colour)
        self.legend.append((label, colour))

    def hline(self, y, colour, label, width=1):
        (a, yy), (b, _) = self.px(self.xlim[0], y), self.px(self.xlim[1], y)
        self.draw.line([(a, yy), (b, yy)], fill=colour, width=width)
        self.legend.append((label, colour))

    def vline(self, x, colour, label):
        (xx, top), (_, bottom) = self.px(x, self.ylim[1]), self.px(x, self.ylim[0])
        self.draw.line([(xx, top), (xx, bottom)], fill=colour, width=2)
        self.legend.append((label, colour))

    def line(self, xs, ys, colour, label, width=2):
        points = [self.px(x, y) for x, y in zip(xs, ys)]
        if len(points) == 1:
            points = points * 2
        self.draw.line(points, fill=colour, width=width)
        self.legend.append((label, colour))

    def bars(self, xs, heights, width, colour, label):
        for x, h in zip(xs, heights):
            (a, top), (b, bottom) = self.px(x - width / 2, h), self.px(x + width / 2, self.ylim[0])
            if h > self.ylim[0]:
                self.draw.rectangle([a, top, max(a, b - 1), bottom], fill=colour)
        self.legend.append((label, colour))

    def save(self, path):
        font = video.font(12)
        x, y = self.box[2] - 8, self.box[1] + 6
        for label, colour in self.legend:
            self.draw.rectangle([x - 12, y + 2, x - 2, y + 10], fill=colour)
            self.draw.text((x - 16, y + 6), label, fill="black", font=font, anchor="rm")
            y += 16
        self.image.save(path, format="PNG")


def motion_figure(path, reference, dancers):
    """Figure 7 as a measurement: windowed motion over time, the data's band, the longest still stretch."""
    curves = [reference.motion_curve(g) for g in dancers]
    top = max([float(np.max(c["motion"])) for c in curves] + [float(curves[0]["data_band"][2])]) * 1.1
    end = max(float(c["seconds"][-1]) + c["window_frames"] / 2 / reference.fps for c in curves)
    plot = Plot((0.0, end), (0.0, top), f"Motion over time (mean latent change per frame, "
                f"{curves[0]['window_frames'] / reference.fps:.3g} s windows)", "seconds", "motion")
    lo, mid, hi = curves[0]["data_band"]
    plot.band(lo, hi, (225, 225, 225), "data 10-90%")
    plot.hline(mid, DATA_COLOUR, "data median")
    freeze = reference.freeze_report(dancers[0])
    if freeze["longest_still_seconds"] > 0:
        start = freeze["longest_still_start_seconds"]
        plot.vspan(start, start + freeze["longest_still_seconds"], (255, 90, 60, 50),
                   "longest still stretch" + (" (frozen)" if freeze["frozen"] else ""))
    for i, c in enumerate(curves):
        plot.line(c["seconds"], c["motion"], COLOURS[i % len(COLOURS)],
                  "generated" if len(curves) == 1 else f"dancer {i}")
    plot.save(path)


def coverage_figure(path, reference, dancers):
    """Share of frames in each pose cluster (clusters sorted by how often the data visits them)."""
    k = len(reference.centres)
    data_share = np.bincount(reference.labels, minlength=k) / len(reference.labels)
    order = np.argsort(data_share)[::-1]
    gen = [np.bincount(metrics.assign(g, reference.centres)[0], minlength=k) / len(g) for g in dancers]
    top = max(float(data_share.max()), max(float(s.max()) for s in gen)) * 1.1
    plot = Plot((-0.5, k - 0.5), (0.0, top), "Pose coverage: share of frames per k-means pose cluster",
                "pose cluster (most common in the data first)", "share")
    plot.bars(np.arange(k) - 0.2, data_share[order], 0.4, DATA_COLOUR, "data")
    plot.bars(np.arange(k) + 0.2, gen[0][order], 0.4, COLOURS[0], "generated" if len(gen) == 1 else "dancer 0")
    plot.save(path)


def beat_phase_figure(path, phases):
    """Where in the beat the dance slows down: its kinematic beats per part of the music's beat, beside the data's
    on its own soundtrack and an unconditioned model's (`musicality.beat_phases`)."""
    shown = [(np.asarray(phases[key], np.float64), label, colour) for key, label, colour in (
        ("data", "data, on its soundtrack", DATA_COLOUR), ("rollout", "generated", COLOURS[0]),
        ("unconditioned", "unconditioned model", COLOURS[1])) if phases.get(key) is not None]
    bins = len(shown[0][0])
    top = max(float(v.max()) for v, _, _ in shown) * 1.15
    plot = Plot((-0.5, bins - 0.5), (0.0, top), f"Where the dance slows down: kinematic beats per 1/{bins} of the "
                "music's beat", f"1/{bins} of the beat (0 starts on the beat)", "share")
    width = 0.8 / len(shown)
    for i, (shares, label, colour) in enumerate(shown):
        plot.bars(np.arange(bins) - 0.4 + width * (i + 0.5), shares, width, colour, label)
    plot.save(path)


def novelty_figure(path, reference, results):
    """Histograms of nearest-data-window distances: generated windows vs held-out data windows."""
    gen = np.concatenate([r["novelty"]["window_distances"] for r in results])
    ref = reference.data_window_distance
    hi = float(max(np.percentile(ref, 99), np.percentile(gen, 99) if len(gen) else 0.0, 1e-6)) * 1.1
    edges = np.linspace(0.0, hi, 31)
    width = edges[1] - edges[0]
    h_ref = np.histogram(np.minimum(ref, hi), edges)[0] / max(len(ref), 1)
    h_gen = np.histogram(np.minimum(gen, hi), edges)[0] / max(len(gen), 1)
    plot = Plot((0.0, hi), (0.0, float(max(h_ref.max(), h_gen.max(initial=0.0))) * 1.15),
                "Novelty: distance of each 1-second window to the nearest training window",
                "distance (RMS per frame, principal components of the latents)", "share of windows")
    centres = (edges[:-1] + edges[1:]) / 2
    plot.bars(centres - width / 4, h_ref, width / 2, DATA_COLOUR, "data vs rest of data")
    plot.bars(centres + width / 4, h_gen, width / 2, COLOURS[0], "generated vs data")
    plot.vline(reference.copy_threshold, (0, 0, 0), "near-copy threshold")
    plot.save(path)


def _labelled(panels, labels, scale=3):
    """Frames side by side, upscaled, each with a caption underneath."""
    tiles = [np.repeat(np.repeat(p, scale, 0), scale, 1) for p in panels]
    tiles = [np.repeat(t, 3, 2) if t.shape[2] == 1 else t for t in tiles]
    h, w = tiles[0].shape[:2]
    canvas = Image.new("RGB", (len(tiles) * (w + 8) + 8, h + 30), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        canvas.paste(Image.fromarray(tile), (8 + i * (w + 8), 4))
        draw.text((8 + i * (w + 8) + w // 2, h + 10), label, fill="black", font=video.font(12), anchor="mt")
    return canvas


def crispness(frames):
    """Mean |2p - 1| over pixels in [0, 1]: 1 for black-and-white silhouettes, 0 for flat gray blur."""
    f = np.asarray(frames, np.float32) / 255.0
    return float(np.mean(np.abs(2.0 * f - 1.0)))


def _mean_frame(frames, chunk=4096):
    total = np.zeros(frames.shape[1:], np.float64)
    for c0 in range(0, len(frames), chunk):
        total += frames[c0:c0 + chunk].sum(0, dtype=np.float64)
    return np.rint(total / len(frames)).astype(np.uint8)


def _evenly(n, count):
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(int))


# ---------------------------------------------------------------------------------------------
# The report


# What measuring a dance holds per frame, beyond its own latents (measured: about 12 x the float32 latents for
# 128-d, and about 1.4 KB a frame for 5-d ones), so that a too long dance is refused before it is made.
MEASURE_FACTOR, MEASURE_OVERHEAD = 16, 1024


def check_memory(dancers, frames, dim):
    """Refuses, before it is rolled out, a dance too long to measure in the memory available."""
    data.require_memory(dancers * frames * (MEASURE_FACTOR * 4 * dim + MEASURE_OVERHEAD),
                        f"measuring {dancers} x {frames} frames of {dim}-d latents", "lower --frames")


def evaluate_dance(generated, train, fps, out_dir, *, decoder_dir=None, data_frames=None, options=None,
                   reference_options=None, arrays=None, progress=True, decode=None, music=None):
    """Measures `generated` (`[T, D]` or `[K, T, D]`) against `train` and writes `out_dir`.

    out_dir receives metrics.json, report.md and PNG figures (the decoded ones only with
    `decoder_dir`). `options` (e.g. how the rollout was made) are recorded in the JSON;
    `arrays` ({name: array}) are saved beside it as name.npy. `decode` (latents -> uint8
    frames; default: the decoder at `decoder_dir`) gives on-screen motion, stage coverage and
    stage range of the second half. Returns the JSON dict.
    """
    generated = np.asarray(generated, np.float32)
    if generated.ndim == 2:
        generated = generated[None]
    if generated.ndim != 3 or generated.shape[1] == 0:
        raise cli.UserError(f"generated latents must be [T, D] or [K, T, D], got shape {generated.shape}")
    if generated.shape[-1] != train.shape[-1]:
        raise cli.UserError(f"generated latents are {generated.shape[-1]}-d but the training latents are "
                            f"{train.shape[-1]}-d")
    if generated.shape[1] < 2:
        raise cli.UserError("generated latents need at least 2 frames to measure motion")
    if not np.all(np.isfinite(generated)):
        raise cli.UserError("generated latents contain NaN or inf (the rollout diverged)")
    data.check_latent_range(generated, "generated latents (the rollout diverged)")
    if decode is None and decoder_dir:
        decode = _saved_decoder(decoder_dir)
    steps = 3 + bool(decode) + bool(decoder_dir)
    clock = [time.time()]

    def say(i, message):
        """The step about to start, after how long the one before it took."""
        if progress:
            took = f" (step {i - 1} took {time.time() - clock[0]:.1f} s)" if i > 1 else ""
            print(f"[{i}/{steps}] {message}{took}", flush=True)
        clock[0] = time.time()

    say(1, f"calibrating on {len(train)} training latents")
    try:
        reference = metrics.Reference(train, fps, **(reference_options or {}))
    except ValueError as e:
        raise cli.UserError(str(e)) from None
    decoded = [{} for _ in generated]
    if decode:
        say(2, "decoding the second half for stage coverage and on-screen motion")
        decoded = metrics.second_half_frame_measures(generated, reference, decode)
    say(2 + bool(decode), f"measuring {cli.plural(len(generated), 'dance')} of {generated.shape[1]} frames")
    try:
        results = [reference.evaluate(g, **d) for g, d in zip(generated, decoded)]
    except ValueError as e:
        raise cli.UserError(str(e)) from None
    report = dict(options=options or {}, data=reference.summary(),
                  dancers=[{k: v for k, v in r.items() if k != "novelty"} for r in results])
    for out, r in zip(report["dancers"], results):
        out["novelty"] = {k: v for k, v in r["novelty"].items() if k not in ("window_distances", "window_sources")}
        out["novelty"]["copied_from_frames"] = [int(s) for s, d in zip(r["novelty"]["window_sources"],
                                                                        r["novelty"]["window_distances"])
                                                if d < reference.copy_threshold][:50]
    names = [k for k in results[0]["verdicts"] if k != "rules"]
    report["verdicts"] = {k: any(r["verdicts"][k] for r in results) for k in names}
    report["verdict_rules"] = results[0]["verdicts"]["rules"]
    report["goals"] = combined_goals([r["goals"] for r in results])
    if music:  # `musicality`'s measures and goals, made by the caller (it knows the songs)
        report["music"] = music

    with cli.atomic_output(out_dir, is_dir=True, owner="evaluate") as tmp:
        figures = {}
        motion_figure(os.path.join(tmp, "figure7_motion.png"), reference, generated)
        figures["motion"] = "figure7_motion.png"
        coverage_figure(os.path.join(tmp, "coverage.png"), reference, generated)
        figures["coverage"] = "coverage.png"
        if results[0]["novelty"]["windows"]:
            novelty_figure(os.path.join(tmp, "novelty.png"), reference, results)
            figures["novelty"] = "novelty.png"
        if music and music.get("beat_phase"):
            beat_phase_figure(os.path.join(tmp, "beat_phase.png"), music["beat_phase"])
            figures["beat_phase"] = "beat_phase.png"
        if decoder_dir:
            say(steps - 1, f"decoding frames for the figures with {decoder_dir}")
            report["pictures"] = _pictures(tmp, figures, generated, reference, decoder_dir, data_frames)
        say(steps, f"writing {out_dir}")
        report["figures"] = figures
        report = metrics.to_json(report)
        with open(os.path.join(tmp, "metrics.json"), "w") as f:
            json.dump(report, f, indent=2)
        with open(os.path.join(tmp, "report.md"), "w") as f:
            f.write(markdown(report))
        for name, array in (arrays or {}).items():
            np.save(os.path.join(tmp, f"{name}.npy"), array)
    return report


def combined_goals(per_dancer):
    """One entry per goal: every dancer's value, and passed when all pass (None if unmeasured)."""
    out = {}
    for name, first in per_dancer[0].items():
        passed = [g[name]["passed"] for g in per_dancer]
        out[name] = dict(target=first["target"], unit=first["unit"], values=[g[name]["value"] for g in per_dancer],
                         data=[g[name]["data"] for g in per_dancer],
                         passed=None if any(p is None for p in passed) else all(passed))
    return out


def _saved_decoder(decoder_dir):
    from tf_dance import savedmodels
    return lambda latents: savedmodels.decode_latents(decoder_dir, latents)


def _pictures(tmp, figures, generated, reference, decoder_dir, data_frames):
    from tf_dance import savedmodels
    train = reference.train
    first = generated[0]
    strip = savedmodels.decode_latents(decoder_dir, first[:STRIP_FRAMES])
    video.contact_sheet(os.path.join(tmp, "figure2_strip.png"), strip, every=4, columns=8, scale=2,
                        labels=[str(i) for i in range(0, len(strip), 4)],
                        title=f"generated dance: every 4th of its first {len(strip)} frames (paper Figure 2)")
    figures["strip"] = "figure2_strip.png"
    start = max(0, len(first) - STRIP_FRAMES)
    last = savedmodels.decode_latents(decoder_dir, first[start:])
    video.contact_sheet(os.path.join(tmp, "figure7_last_frames.png"), last, every=4, columns=8, scale=2,
                        labels=[str(i) for i in range(start, len(first), 4)],
                        title=f"generated dance: every 4th of its last {len(last)} frames (frozen? paper Figure 7)")
    figures["last_frames"] = "figure7_last_frames.png"

    flat = generated.reshape(-1, generated.shape[-1])
    sample = savedmodels.decode_latents(decoder_dir, flat[_evenly(len(flat), AVERAGE_FRAMES)])
    data_sample = savedmodels.decode_latents(decoder_dir, train[_evenly(len(train), AVERAGE_FRAMES // 4)])
    mean_latent = savedmodels.decode_latents(decoder_dir, train.mean(0, keepdims=True))[0]
    panels = [_mean_frame(sample), _mean_frame(data_frames) if data_frames is not None else _mean_frame(data_sample),
              mean_latent]
    labels = ["average generated frame", "average data frame" if data_frames is not None
              else "average decoded data frame", "decoded mean latent"]
    if panels[1].shape != panels[0].shape:  # a dataset of another size or channel count than the decoder
        panels[1], labels[1] = _mean_frame(data_sample), "average decoded data frame"
    _labelled(panels, labels).save(os.path.join(tmp, "figure5_average.png"), format="PNG")
    figures["average"] = "figure5_average.png"
    gen_crisp, data_crisp = crispness(sample), crispness(data_sample)
    n = min(len(first), len(train), metrics.SCREEN_FRAMES)
    starts, length = metrics.data_stretches(reference, n, 4)
    screen = metrics.screen_motion(savedmodels.decode_latents(decoder_dir, first[len(first) - n:]))
    data_screen = float(np.mean([metrics.screen_motion(savedmodels.decode_latents(decoder_dir, train[s:s + length]))
                                 for s in starts]))
    return dict(crispness=gen_crisp, data_crispness=data_crisp,
                crispness_ratio=gen_crisp / data_crisp if data_crisp > 0 else None,
                screen_frames=int(n), screen_motion=screen, data_screen_motion=data_screen,
                screen_motion_ratio=screen / data_screen if data_screen > 0 and n > 1 else None)


def _row(name, gen, data, fmt="{:.3g}"):
    show = lambda v: "-" if v is None else (fmt.format(v) if isinstance(v, (int, float)) else str(v))
    return f"| {name} | {show(gen)} | {show(data)} |\n"


def _goals_table(goals, dancers):
    if not goals:
        return ""
    met = {True: "yes", False: "**NO**", None: "not measured"}
    show = lambda v: "-" if v is None else f"{v:.3g}"
    h = dancers[0]["second_half"]
    out = [f"\n## Goals (second half: frames {h['start_frame']}-{h['start_frame'] + h['frames'] - 1})\n\n"
           "| goal | generated | data | target | met? |\n| --- | --- | --- | --- | --- |\n"]
    for name, g in goals.items():
        values = ", ".join(show(v) for v in g["values"])
        data = ", ".join(sorted({show(v) for v in g["data"]}))
        out.append(f"| {name.replace('_', ' ')} ({g['unit']}) | {values} | {data} | {g['target']} | "
                   f"{met[g['passed']]} |\n")
    return "".join(out)


def _second_half_rows(h):
    if not h:
        return []
    f, m, c, rep = h["freeze"], h["motion"], h["coverage"], h["repetition"]
    rows = [_row("2nd half: longest still stretch (s)", f["longest_still_seconds"], f["data_longest_still_seconds"]),
            _row("2nd half: motion ratio / data", m["motion_ratio"], 1.0),
            _row("2nd half: pose clusters visited", c["clusters_visited"], c["data_clusters_visited"]),
            _row("2nd half: pose coverage ratio", c["coverage_ratio"], 1.0),
            _row(f"2nd half: share of one-second windows that recur ({rep['blocks']} x {rep['block_frames']} frames)",
                 rep["repeat_share"], rep["data_repeat_share"])]
    if h.get("screen"):
        rows.append(_row(f"2nd half: on-screen motion ({h['screen']['stretches']} decoded stretches, mean pixel "
                         "change)", h["screen"]["screen_motion"], h["screen"]["data_screen_motion"]))
    st = h.get("stage")
    if st and st.get("missing"):
        rows.append(_row("2nd half: stage coverage", f"not measured: {st['missing']}", None))
    elif st:
        rows += [_row(f"2nd half: stage positions visited (of {st['position_bins_occupied']} the data uses)",
                      st["positions_visited"], st["data_positions_visited"]),
                 _row(f"2nd half: silhouette sizes visited (of {st['size_bins_occupied']})",
                      st["sizes_visited"], st["data_sizes_visited"]),
                 _row("2nd half: stage coverage (lower of the two ratios; data: 10th percentile)",
                      st["stage_coverage"], st["data_stage_coverage_p10"])]
        if "stage_range" in st:
            outer = lambda v: "-" if None in v else f"{100 * v[0]:.1f}% / {100 * v[1]:.1f}%"  # noqa: E731
            rows += [_row("2nd half: horizontal span of the centre (5th-95th percentile, fraction of the width)",
                          st["position_span"], st["data_position_span"]),
                     _row("2nd half: span of the silhouette's height (5th-95th percentile)",
                          st["size_span"], st["data_size_span"]),
                     _row("2nd half: stage range (the span ratio further from 1)", st["stage_range"], 1.0),
                     _row("2nd half: frames in the outer tenth of the data's positions (left / right)",
                          outer(st["outer_shares"]), outer(st["data_outer_shares"]))]
    b = h.get("balance")
    if b and len(b["clips"]) > 1:
        rows += [_row(f"2nd half: share of frames nearest to clip {c}", share, data)
                 for c, share, data in zip(b["clips"], b["shares"], b["data_shares"])]
    return rows


def markdown(report):
    """report.md: verdicts first, then each measure with what it means and its picture."""
    d, dancers, figs = report["data"], report["dancers"], report["figures"]
    yes = lambda v: "**yes**" if v else "no"
    out = ["# Dance evaluation\n\n",
           f"{cli.plural(len(dancers), 'generated dance')} of {dancers[0]['frames']} frames "
           f"({dancers[0]['seconds']:.1f} s) "
           f"measured against {d['frames']} training latents ({d['dim']}-d, {d['fps']:g} fps"
           f"{', %d clips' % d['clips'] if d.get('clips', 1) > 1 else ''}).\n\n",
           "## Verdicts\n\n| question | answer | rule |\n| --- | --- | --- |\n"]
    for k, v in report["verdicts"].items():
        out.append(f"| {k.replace('_', ' ')}? | {yes(v)} | {report['verdict_rules'][k]} |\n")
    out.append(_goals_table(report.get("goals"), dancers))
    for i, r in enumerate(dancers):
        m, f, c, n = r["motion"], r["freeze"], r["coverage"], r["novelty"]
        out.append(f"\n## {'Generated dance' if len(dancers) == 1 else f'Dancer {i}'}\n\n"
                   "| measure | generated | data |\n| --- | --- | --- |\n")
        out += [_row("motion per frame (mean L2 latent change)", m["motion_per_frame"], m["data_motion_per_frame"]),
                _row(f"motion ratio, last {m['tail_frames']} frames / data", m["tail_motion_ratio"], 1.0),
                _row("longest still stretch (s)", f["longest_still_seconds"], f["data_longest_still_seconds"]),
                _row("share of still one-second windows", f["still_share"], f["data_still_share"]),
                _row("pose clusters visited", c["clusters_visited"], c["data_clusters_visited"]),
                _row("coverage ratio", c["coverage_ratio"], 1.0),
                _row("frames within the data's pose range", c["in_distribution_share"], 0.99),
                _row("spread around the data mean (ratio)", c["spread_ratio"], 1.0),
                _row("median distance to nearest training window", n["window_distance_median"],
                     n["data_window_distance_median"]),
                _row("share of near-copy windows", n["copy_share"], n["data_copy_share"]),
                _row("longest near-copy stretch (s)", n["longest_copy_seconds"], None),
                _row(f"share of one-second windows that recur (last {r['repetition']['frames']} frames)",
                     r["repetition"]["repeat_share"], r["repetition"]["data_repeat_share"])]
        out += _second_half_rows(r.get("second_half"))
    pictures = report.get("pictures")
    if pictures:
        out.append(_row("crispness of decoded frames", pictures["crispness"], pictures["data_crispness"]))
        out.append(_row(f"on-screen motion, last {pictures['screen_frames']} decoded frames (mean pixel change)",
                        pictures["screen_motion"], pictures["data_screen_motion"]))
    out.append(f"""
## What the measures mean

**Motion** (paper Figure 7). Per frame, the L2 distance the latent vector moves from the previous
frame; the decoder draws a moving dancer only if this is comparable to the data's
({d['motion_per_frame']:.3g} per frame). The ratio over the last frames shows where a rollout ends up:
near 1 is dancing, near 0 is freezing or a shrinking wobble, far above 1 is jitter.

![motion over time]({figs['motion']})

The grey band holds the middle 80% of the data's windows; the red span (if any) is the rollout's
longest still stretch.

**Freezing.** A one-second window is *still* when its frames stay closer to their own mean (RMS) than
{d['freeze_fraction']:g} x the data's median for one-second windows ({d['still_threshold']:.3g}): far below any
real movement, yet a pose held with a little jitter in every dimension still counts (per-frame motion would
add that jitter up over all dimensions). The data never holds still for more than
{d['longest_still_seconds']:.2f} s, so a rollout that holds still for more than
{d['freeze_seconds']:.2f} s (twice that, and at least {d['min_freeze_seconds']:g} s) is called frozen: the paper's
LSTM that "settled on one pose and stayed frozen there forever".
""")
    if "last_frames" in figs:
        out.append(f"\nThe last frames of the rollout (every 4th): a frozen dance shows one pose repeated.\n\n"
                   f"![last frames]({figs['last_frames']})\n")
    out.append(f"""
**Second half and goals.** A rollout starts from real frames, so its first stretch can look like the data
whatever the model learned. Freezing, motion, pose coverage, recurring seconds, clip balance and, with a
decoder, on-screen motion, stage coverage and stage range are measured again on the second half alone, each
against equally long stretches of the data (inside clips: a cut between two videos is never counted as motion
or as a second of dance), and the goals table judges only that half. Recurring seconds there are counted in
back-to-back blocks as long as the data allows (at most 6,000 frames) over the whole half.

**Stage coverage.** Where the dancer goes: in each decoded frame the silhouette's horizontal centre and its
height (the rows holding the middle 98% of its pixels). Each is cut into equal bins between the data's 1st and
99th percentiles (decoded data, sampled at the same stride); the rollout's coverage is the number of bins the
data uses that it visits, over the number an equally long stretch of data visits, per axis; the stage coverage
is the lower of the two. A dancer who wobbles on one spot visits one position. *stuck in place* below 0.8, or
below the 10th percentile of the data's own stretches where shorter stretches of the data often stay on one side.

**Stage range.** How far the dancer travels, finer than the bins: the span between the 5th and 95th
percentiles of the silhouette's horizontal centre, and of its height, over the span an equally long stretch of
the (decoded) data covers; the stage range is the ratio further from 1 (goal: within
{metrics.STAGE_RANGE_GOAL[0]:g}-{metrics.STAGE_RANGE_GOAL[1]:g}x, so that a dancer who keeps to the middle and one
who wanders where the data's dancers never go both miss). Beside it, the share of frames whose centre lies in the
outer tenth of the data's positions on either side: a dancer who never reaches the edges of the stage the data's
dancers reach has none.

**Clip balance.** Every second-half frame (up to {metrics.BALANCE_SAMPLES:,} evenly spaced) is matched with its
nearest training latent, which belongs to one clip; each clip's share of the matches against its share of the
data (goal: every clip within {metrics.CLIP_BALANCE_GOAL[0]:g}-{metrics.CLIP_BALANCE_GOAL[1]:g}x). A dance that
settles into one clip's style while the data holds several misses it; with one clip it is always met.
""")
    out.append(f"""
**Pose coverage.** The training latents are grouped into {d['clusters']} poses by k-means; a dance that
explores the data's repertoire visits about as many of them as an equally long stretch of the data
(ratio near 1). A frozen or looping rollout visits few. "Within the data's pose range" is the share of
frames no farther from a pose centre than 99% of data frames are: low values mean the decoder is
asked for vectors it never saw (garbage images). The spread ratio is the RMS distance from the data's
mean latent, relative to the data's: near 0 is the blurry average of Figure 5.

![pose coverage]({figs['coverage']})
""")
    if "novelty" in figs:
        out.append(f"""
**Novelty.** Every generated 1-second window is compared with every 1-second window of the training
data ({d['bank_windows']} windows; {d['window_frames']} frames each, compared on the top principal
components of the latents). The data itself comes back to a similar second of dance at a median distance
of {d['window_distance_median']:.3g} (held-out windows against the rest of the data). A generated window
closer than {d['copy_fraction']:g} x that ({d['copy_threshold']:.3g}) is a near-copy of the training data: a dance
that is mostly near-copies replays what it memorised (in the data only {d['copy_share']:.0%} of windows are that
close to another part of it).

![novelty]({figs['novelty']})
""")
    if "strip" in figs:
        out.append(f"""
**Pictures.** Every 4th decoded frame of the start of the dance (paper Figure 2):

![every 4th frame]({figs['strip']})

The average of the decoded frames next to the data's average and the decoded mean latent (paper
Figure 5): a dance that collapsed to the average looks like the middle or right panel in every frame.
Crispness is the mean |2p - 1| of decoded pixels: 1 for clean silhouettes, lower for gray blur.

![average frames]({figs['average']})
""")
    if report.get("music"):
        out.append(_music_section(report["music"], figs.get("beat_phase")))
    out.append("\nAll numbers are in `metrics.json`.\n")
    return "".join(out)


def _music_section(m, figure=None):
    """The dance against its music: beat alignment (data, conditioned, unconditioned), where in the beat it slows
    down (`figure`) and tempo following."""
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    out = ["\n## Dancing to music\n\nBeat alignment: the share of the dance's kinematic beats (local minima of its "
           "latent speed) within 0.1 s of a music beat.\n\n| dance | beat alignment |\n| --- | --- |\n",
           f"| the data, on its own soundtrack | {fmt(m.get('data_alignment'))} |\n",
           f"| the rollout, on {m.get('song', 'the song')} | {fmt(m.get('alignment'))} |\n"]
    if m.get("unconditioned_alignment") is not None:
        out.append(f"| the unconditioned model's rollout, on the same song | {fmt(m['unconditioned_alignment'])} |\n")
    if figure:
        out.append("\nWhere in the beat each dance slows down: a dance on the beat piles its kinematic beats up at "
                   "the start and end of the beat, one deaf to it spreads them evenly.\n\n"
                   f"![where the dance slows down in the beat]({figure})\n")
    follow = m.get("tempo_follow")
    if follow:
        out.append(f"\nTempo following: on a song at {follow['song_tempi'][0]:g} BPM that steps to "
                   f"{follow['song_tempi'][1]:g} and {follow['song_tempi'][2]:g} BPM, the dance's movement tempo is "
                   f"{', '.join(f'{t:.1f}' for t in follow['tempi'])} BPM: ratios "
                   f"{', '.join(f'{r:.2f}' for r in follow['ratios'])} for the song's "
                   f"{', '.join(f'{r:.2f}' for r in follow['expected'])} (largest error {follow['error']:.0%}).\n")
    for name, g in (m.get("goals") or {}).items():
        out.append(f"\nGoal {name.replace('_', ' ')}: {'met' if g['passed'] else '**missed**'}.\n")
    return "".join(out)
