"""Measures every speed figure in BENCHMARKS.md in one run and prints medians and ratios.

    python -m tf_dance.bench [--only=ingest,autoencoder,...] [--json=PATH]

Each benchmark is a function registered with `@benchmark("name")` that takes `repeats` and returns
a dict of named figures (medians over `repeats` timed runs, after a warm-up); `run(names, repeats)`
runs several from Python. Ratios are computed inside one benchmark from figures measured in the
same run, since this machine is shared.
"""

import json
import os
import statistics
import time

from absl import app, flags

from tf_dance import cli

FLAGS = flags.FLAGS
REPEATS = 5
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository: flags/ lives here


def define_flags():
    flags.DEFINE_list("only", [], "Run only these benchmarks (comma separated); default all.")
    flags.DEFINE_string("json", None, "Also write the results as JSON to this path.")
    flags.DEFINE_integer("repeats", REPEATS, "Timed repetitions per figure; the median is reported.", lower_bound=1)


_BENCHES = {}


def benchmark(name):
    def register(fn):
        _BENCHES[name] = fn
        return fn
    return register


def median_rate(fn, items, repeats=REPEATS, warmup=1):
    """Items per second of `fn()` (which processes `items` items): median over repeats."""
    for _ in range(warmup):
        fn()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(items / (time.perf_counter() - t))
    return statistics.median(rates)


# ---- ingest ----


@benchmark("ingest")
def ingest(repeats=REPEATS):
    """Synthesize 18,000 dancer frames; decode a 480x270 H.264 source to 96x54 datasets."""
    import tempfile

    from tf_dance import dancer, video

    n = 18000
    synth = median_rate(lambda: dancer.dancer(n, seed=0), n,
                        repeats=min(3, repeats), warmup=0)
    frames = dancer.dancer(2400, seed=1)["frames"]
    results = {"synthesize_dancer_frames_per_s": synth,
               "synthesize_dancer_18000_frames_s": n / synth}
    with tempfile.TemporaryDirectory() as tmp:
        source = video.write_video(os.path.join(tmp, "src.mp4"), frames, 24, scale=5)
        for name, kwargs in (("gray", {}), ("rgb", dict(channels=3)),
                             ("gray_crop_threshold", dict(fit="crop", threshold=128)),
                             ("gray_to_10fps", dict(fps=10))):
            results[f"prepare_480x270_{name}_source_frames_per_s"] = median_rate(
                lambda: video.read_video(source, progress=False, **kwargs), len(frames), repeats)
    gray = results["prepare_480x270_gray_source_frames_per_s"]
    results["prepare_gray_vs_1000_fps_goal"] = gray / 1000.0
    return results



# ---- autoencoder ----

def _EpochClock():
    import keras

    class EpochClock(keras.callbacks.Callback):
        """Wall seconds of each epoch."""

        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    return EpochClock()


def _round_robin_rates(fns, items, repeats=REPEATS):
    """Items per second of each of `fns`, timed in turns so that load from other users hits each
    alike: medians over `repeats` rounds after one warm-up round."""
    for fn in fns:
        fn()
    seconds = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, seconds):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return [statistics.median(items / t for t in times) for times in seconds]


@benchmark("autoencoder")
def bench_autoencoder(repeats=REPEATS):
    """Training images/s (batch 200) of plain Keras `fit` (float32, no XLA) vs. the compiled variants
    (XLA, mixed bfloat16 where the CPU has it natively, both), and decode/encode images/s at batch 500
    through the exported SavedModels vs. Keras `predict`; the quick flags' model (filters 8,16,32,32)
    and, for decoding, the paper's (32,32,32,32). Random silhouettes: speed does not depend on content."""
    import tempfile

    import keras
    import numpy as np
    import tensorflow as tf

    from tf_dance import autoencoder, autoencoder_training, savedmodels

    quick, paper = [8, 16, 32, 32], [32, 32, 32, 32]
    config = autoencoder_training.check_config(dict(filters=quick, batch_size=200))
    rng = np.random.default_rng(0)
    frames = ((rng.random((1000, 54, 96, 1)) > 0.9) * 255).astype(np.uint8)
    table = tf.constant(frames)
    batches = autoencoder_training.train_batches(table, np.arange(len(frames)), 200, 0, 0)
    out, steps = {}, 10
    variants = [("fit_float32", False, "float32"), ("fit_float32_xla", True, "float32")]
    if autoencoder_training.native_bfloat16():
        variants += [("fit_mixed_bfloat16", False, "mixed_bfloat16"),
                     ("fit_mixed_bfloat16_xla", True, "mixed_bfloat16")]
    models, clock = {}, _EpochClock()
    for name, jit, policy in variants:
        keras.utils.set_random_seed(0)
        *_, models[name] = autoencoder_training.build((54, 96, 1), {**config, "jit_compile": jit}, policy)
        models[name].fit(batches, steps_per_epoch=2, epochs=1, verbose=0)  # trace and compile
    seconds = {name: [] for name in models}
    for _ in range(repeats):  # round-robin, so load from other users hits every variant alike
        for name, model in models.items():
            model.fit(batches, steps_per_epoch=steps, epochs=1, callbacks=[clock], verbose=0)
            seconds[name].append(clock.seconds[-1])
    for name, times in seconds.items():
        out[f"ae_train_images_per_s_{name}"] = statistics.median(steps * 200 / t for t in times)
    base = out["ae_train_images_per_s_fit_float32"]
    for name, *_ in variants[1:]:
        out[f"ae_train_{name[4:]}_vs_plain_fit"] = out[f"ae_train_images_per_s_{name}"] / base
    default = "fit_mixed_bfloat16" if autoencoder_training.native_bfloat16() else "fit_float32"
    out["ae_train_default_precision_auto_vs_plain_fit"] = out[f"ae_train_images_per_s_{default}"] / base

    latents = rng.normal(size=(2000, 128)).astype(np.float32)
    for label, filters in (("quick", quick), ("paper", paper)):
        encoder = autoencoder.build_encoder(54, 96, 1, filters)
        decoder = autoencoder.build_decoder(54, 96, 1, filters)
        with tempfile.TemporaryDirectory() as tmp:
            autoencoder.export_encoder(encoder, f"{tmp}/encoder")
            autoencoder.export_decoder(decoder, f"{tmp}/decoder")
            predict, fast = _round_robin_rates(
                [lambda: decoder.predict(latents, batch_size=500, verbose=0),
                 lambda: savedmodels.decode_latents(f"{tmp}/decoder", latents, 500)], len(latents), repeats)
            out[f"ae_{label}_decode_images_per_s_keras_predict_b500"] = predict
            out[f"ae_{label}_decode_images_per_s_decode_latents_b500"] = fast
            out[f"ae_{label}_decode_latents_vs_predict"] = fast / predict
            out[f"ae_{label}_encode_images_per_s_encode_frames_b500"] = median_rate(
                lambda: savedmodels.encode_frames(f"{tmp}/encoder", frames, 500), len(frames), repeats)
    return out


# ---- sequence ----


@benchmark("sequence")
def bench_sequence(repeats=REPEATS):
    """The paper's 2x600 LSTM on 128-d latents: training frames/s (batch 5, seq 50) of plain Keras
    `fit` vs. the fused XLA train step; rollout frames/s of the stateful Keras model with `predict`
    per step vs. the exported `rollout` signature (batch 1 and 16); and the paper's Perlin check at
    full size (flags/paper_lstm.flags on 18,000 10-d Perlin vectors): training seconds until an
    epoch's mean loss is 100x below the first batch's."""
    import tempfile

    import keras
    import numpy as np

    from tf_dance import perlin, rollout, savedmodels, sequence_model, sequence_training

    out = {"load average (1 min) at start": os.getloadavg()[0]}
    dim, batch, seq, batches = 128, 5, 50, 8
    cfg = sequence_training.resolve_config({})
    rng = np.random.default_rng(0)
    latents = np.cumsum(rng.normal(size=(batches * batch * seq + batch, dim)), 0).astype(np.float32)
    mean, std = sequence_model.standardizer(latents)
    model = sequence_model.build_model("lstm", dim, mean, std, batch, units=cfg["units"],
                                       num_layers=cfg["num_layers"])
    net = sequence_model.make_net(model)
    windows = sequence_training.char_rnn_batches(net.normalize(latents), batch, seq)
    frames = batches * batch * seq

    model.compile(keras.optimizers.Adam(2e-3, clipvalue=5.0), "mse")
    x, y = windows[:, :, :-1].reshape(-1, seq, dim), windows[:, :, 1:].reshape(-1, seq, dim)
    out["train frames/s, Keras fit (stateful LSTM)"] = median_rate(
        lambda: model.fit(x, y, batch_size=batch, shuffle=False, verbose=0), frames, repeats)
    optimizer = keras.optimizers.Adam(2e-3, clipvalue=5.0)
    step = sequence_training.make_train_step(net, optimizer, cfg)

    def fused():
        state = net.zero_state(batch)
        for window in windows:
            loss, state = step(window, state)
        return float(loss)

    out["train frames/s, fused XLA step"] = median_rate(fused, frames, repeats)
    out["ratio fused / fit"] = out["train frames/s, fused XLA step"] / out["train frames/s, Keras fit (stateful LSTM)"]

    single = sequence_model.stateful_copy(model, 1)
    naive_steps = 30

    def naive():
        sequence_model.reset_states(single)
        frame = latents[:1, None]
        for _ in range(naive_steps):
            frame = net.denormalize(single.predict(frame, verbose=0))
    out["rollout frames/s, Keras predict per step (batch 1)"] = median_rate(naive, naive_steps, repeats=3)
    with tempfile.TemporaryDirectory() as tmp:
        path = rollout.export(model, tmp, "dance_lstm")
        seed = latents[:50]
        n = 4000
        out["rollout frames/s, rollout signature (batch 1)"] = median_rate(
            lambda: savedmodels.rollout(path, seed, n, noise=0.1), n, repeats)
        out["rollout frames/s, rollout signature (batch 16, frames x batch)"] = median_rate(
            lambda: savedmodels.rollout(path, np.repeat(seed[None], 16, 0), n // 4, noise=0.1), 16 * n // 4, repeats)
        start = time.perf_counter()
        savedmodels.rollout(path, seed, 60000, noise=0.1)
        out["rollout seconds, 60,000 frames (batch 1, once)"] = time.perf_counter() - start
        out.update(_single_threaded_rollout(path, seed, n))
    out["ratio rollout signature / predict (batch 1)"] = (out["rollout frames/s, rollout signature (batch 1)"]
                                                         / out["rollout frames/s, Keras predict per step (batch 1)"])
    out["ratio rollout signature (1 thread) / predict (batch 1)"] = (
        out["rollout frames/s, rollout signature (batch 1, 1 thread)"]
        / out["rollout frames/s, Keras predict per step (batch 1)"])

    paper = sequence_training.flagfile_settings(
        os.path.join(_ROOT, "flags", "paper_lstm.flags"))
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/perlin.npy", perlin.perlin_vectors(18000, seed=0, dim=10))
        result = sequence_training.train_and_evaluate(f"{tmp}/perlin.npy", f"{tmp}/run", f"{tmp}/saved",
                                                      **dict(paper, dim=10, epochs=12))
    out["Perlin 2x600 (paper flags): seconds to a 100x loss drop"] = result["seconds_to_100x"] or "not reached"
    out["Perlin 2x600: epochs to a 100x loss drop"] = next(
        (h["epoch"] for h in result["history"] if h["train_loss"] <= result["first_loss"] / 100), "not reached")
    out["Perlin 2x600: loss drop after 12 epochs"] = result["loss_drop"]
    out["Perlin 2x600: training frames/s (median epoch)"] = result["frames_per_second"]
    out["load average (1 min) at end"] = os.getloadavg()[0]
    return out


_SINGLE_THREADED = """
import sys, time, numpy as np
from tf_dance import savedmodels
path, n = sys.argv[1], int(sys.argv[2])
seed = np.load(sys.argv[3])
savedmodels.rollout(path, seed, 100)
rates = []
for _ in range(3):
    start = time.perf_counter()
    savedmodels.rollout(path, seed, n, noise=0.1)
    rates.append(n / (time.perf_counter() - start))
start = time.perf_counter()
savedmodels.rollout(path, seed, 60000, noise=0.1)
print(sorted(rates)[1], time.perf_counter() - start)
"""


def _single_threaded_rollout(path, seed, n):
    """The batch-1 rollout in a fresh process with TF's and XLA's thread pools at one thread: on a
    shared 2-core machine, splitting one small matrix-vector product per step over two threads
    costs more than it gains. Thread pools are fixed at start-up, hence the subprocess."""
    import subprocess
    import sys

    import numpy as np

    seed_path = os.path.join(os.path.dirname(path), "seed.npy")
    np.save(seed_path, seed)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false",
               PYTHONPATH=os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", _SINGLE_THREADED, path, str(n), seed_path], env=env,
                            capture_output=True, text=True, check=True)
    rate, seconds = map(float, result.stdout.split()[-2:])
    return {"rollout frames/s, rollout signature (batch 1, 1 thread)": rate,
            "rollout seconds, 60,000 frames (batch 1, 1 thread, once)": seconds}



# ---- faithfulness ----


_REALDANCE = os.path.join(os.path.dirname(_ROOT), "shared", "realdance")  # the development clips, if present
_FAITHFULNESS_LSTMS = {  # name: (flagfile, extra flags); the paper's MSE recipe at the quick size (2 x 256)
    "paper MSE 2x256": ("paper_lstm.flags", ["--units=256"]),
    "recommended": (None, []),  # quick_lstm.flags on the dancer, footage_lstm.flags on footage
}


@benchmark("faithfulness")
def bench_faithfulness(repeats=REPEATS):
    """Issue 14's table (BENCHMARKS.md, "The ReLU code downstream"): the autoencoder with the linear and with the
    ReLU code (`--code_activation`, otherwise identical, seed 0) on the dancer (18,000 frames, seed 0,
    flags/quick_autoencoder.flags) and on the real clips of ../shared/realdance (prepared by `prepare_video` with
    its defaults, flags/footage_autoencoder.flags; skipped when the clips are absent); on each one's latents the
    paper's MSE LSTM (flags/paper_lstm.flags at 2 x 256) and the recommended setting (flags/quick_lstm.flags on the
    dancer; flags/footage_lstm.flags at the batch size the demo fits to the clips), each rolled out for 60,000
    frames by `generate` (random_seed 0, the export's recipe) and judged by `evaluate` on the second half. Every
    step is its script, as a user runs it. 1.5-2 hours on 2 cores (the 8,000-step footage autoencoders dominate).
    Runs once (`repeats` is unused: the figures are not speeds)."""
    import json as json_lib
    import subprocess
    import sys
    import tempfile

    from tf_dance import dancer as dancer_lib
    from tf_dance import data, demo

    flags_dir = os.path.join(_ROOT, "flags")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")]))

    def script(name, *args):
        subprocess.run([sys.executable, "-m", f"tf_dance.{name}", *args], env=env, check=True, stdout=subprocess.DEVNULL)

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        dancer = dancer_lib.dancer(18000, seed=0)  # the demo's dancer
        data.save_dataset(f"{tmp}/dancer.npz", dancer["frames"], 24.0)
        sets = [("dancer", f"{tmp}/dancer.npz", "quick_autoencoder.flags", "quick_lstm.flags", [])]
        if os.path.isdir(_REALDANCE):
            script("prepare_video", f"--video={_REALDANCE}", f"--out={tmp}/real.npz")
            fitted, _ = demo.lstm_sizing(f"{tmp}/real.npz", os.path.join(flags_dir, "footage_lstm.flags"), 0)
            sets.append(("real clips", f"{tmp}/real.npz", "footage_autoencoder.flags", "footage_lstm.flags", fitted))
        for label, path, ae_flags, dancing_flags, dancing_extra in sets:
            for code in ("linear", "relu"):
                run = f"{tmp}/{label.replace(' ', '_')}_{code}"
                print(f"  {label}, {code} code", flush=True)
                script("train_autoencoder", f"--flagfile={flags_dir}/{ae_flags}", f"--code_activation={code}",
                       "--seed=0", f"--data={path}", f"--workdir={run}/ae", f"--export_dir={run}/saved")
                with open(f"{run}/ae/eval.json") as f:
                    out[f"{label}, {code}: held-out IoU"] = json_lib.load(f)["metrics"]["iou"]
                script("encode", f"--data={path}", f"--encoder={run}/saved/encoder", f"--out={run}/latents.npy",
                       "--noprogress")
                for name, (flagfile, extra) in _FAITHFULNESS_LSTMS.items():
                    flagfile, extra = (flagfile, extra) if flagfile else (dancing_flags, dancing_extra)
                    lstm = f"{run}/{name.split()[0]}"
                    script("train_lstm", f"--flagfile={flags_dir}/{flagfile}", *extra, "--dim=0", "--seed=0",
                           f"--latents={run}/latents.npy", f"--workdir={lstm}/work", f"--export_dir={lstm}/saved")
                    script("generate", f"--lstm={lstm}/saved/dance_lstm", f"--encoder={run}/saved/encoder",
                           f"--decoder={run}/saved/decoder", f"--data={path}", f"--latents={run}/latents.npy",
                           "--frames=60000", "--seed=0", f"--out={lstm}/dance.mp4", "--noprogress")
                    script("evaluate", f"--generated={lstm}/dance_latents.npy", f"--latents={run}/latents.npy",
                           f"--data={path}", f"--decoder={run}/saved/decoder", "--seed=0",
                           f"--out_dir={lstm}/eval", "--noprogress")
                    with open(f"{lstm}/eval/metrics.json") as f:
                        metrics = json_lib.load(f)
                    goals, key = metrics["goals"], f"{label}, {code}, {name}"
                    out[f"{key}: longest freeze (s)"] = goals["freeze"]["values"][0]
                    out[f"{key}: on-screen motion / data"] = goals["on_screen_motion"]["values"][0]
                    out[f"{key}: recurring seconds (%)"] = 100 * goals["recurring_seconds"]["values"][0]
                    out[f"{key}: pose coverage / data"] = goals["pose_coverage"]["values"][0]
                    out[f"{key}: stage coverage / data"] = goals["stage_coverage"]["values"][0]
                    out[f"{key}: verdicts"] = ", ".join(k for k, v in metrics["verdicts"].items() if v) or "none"
    out["load average (1 min) at end"] = os.getloadavg()[0]
    return out


# ---- generate ----


def _demo_settings():
    """The demo's autoencoder and LSTM settings, read from their flagfiles (the bench sizes models like the demo)."""
    from tf_dance import autoencoder_training, sequence_training
    flags_dir = os.path.join(_ROOT, "flags")
    ae = autoencoder_training.check_config(
        autoencoder_training.flagfile_settings(os.path.join(flags_dir, "quick_autoencoder.flags")))
    lstm = sequence_training.resolve_config(
        sequence_training.flagfile_settings(os.path.join(flags_dir, "quick_lstm.flags")))
    return ae, lstm


@benchmark("generate")
def bench_generate(repeats=REPEATS):
    """Wall time of making and writing a dance (what `python -m tf_dance.generate` runs after its imports:
    `generation.dance_chunks` into `generation.write_dance`) for 600 and 60,000 frames, with RANDOM-INIT
    models of the demo's size (flags/quick_autoencoder.flags, flags/quick_lstm.flags): speed does not
    depend on the weights. Seeded from latents; writes mp4, GIF (first 600 frames), sheet and latents.
    Also the share of each stage for 60,000 frames (they interleave: the dance is made in pieces)."""
    import tempfile

    import keras
    import numpy as np

    from tf_dance import autoencoder, cli, data, generation, rollout, savedmodels, sequence_model

    ae, lstm = _demo_settings()
    dim, filters = ae["latent_dim"], ae["filters"]
    units, layers = lstm["units"], lstm["num_layers"]
    keras.utils.set_random_seed(0)
    out = {"model: random-init LSTM layers x units": f"{layers} x {units}",
           "model: random-init autoencoder filters": ",".join(map(str, filters))}
    with tempfile.TemporaryDirectory() as tmp:
        cli.export_version(tmp, "decoder", lambda d: autoencoder.export_decoder(
            autoencoder.build_decoder(data.HEIGHT, data.WIDTH, 1, filters, latent_dim=dim), d))
        model = sequence_model.build_model("lstm", dim, np.zeros(dim, np.float32), np.ones(dim, np.float32),
                                           batch_size=1, units=units, num_layers=layers)
        rollout.export(model, tmp, "dance_lstm")
        models = savedmodels.load_models(tmp)
        seed = np.random.default_rng(0).normal(size=(50, dim)).astype(np.float32)

        def run(frames):
            timings = {}
            result = generation.write_dance(os.path.join(tmp, "out", "dance.mp4"),
                                            generation.dance_chunks(models, seed, frames, timings=timings), 24.0,
                                            frames=frames)
            return result["seconds"], dict(timings, write=result["write_seconds"])

        first = time.perf_counter()
        run(600)
        out["generate 600 frames, first call in a process (s)"] = time.perf_counter() - first
        times = []
        for _ in range(repeats):
            times.append(run(600)[0])
        out["generate 600 frames, warm (median s)"] = statistics.median(times)
        seconds, stages = run(60000)
        out["generate 60,000 frames, warm (once, s)"] = seconds
        for stage, value in stages.items():
            out[f"  60,000 frames: {stage} (s)"] = value
    out["ratio 60,000 / 600 frames (warm)"] = (out["generate 60,000 frames, warm (once, s)"]
                                               / out["generate 600 frames, warm (median s)"])
    out["generated frames/s, 60,000 frames"] = 60000 / out["generate 60,000 frames, warm (once, s)"]
    return out




# ---- dancing ----

_DANCING_FRAMES = 18000  # the demo's data (flags/quick.flags) and the paper's dataset size
# (name, training settings over flags/quick_lstm.flags, rollout temperature, rollout noise)
_DANCING_VARIANTS = [
    ("mse (paper's loss, teacher forcing)", dict(head="mse", condition_steps=0, input_noise=0.0), 0.0, 0.0),
    ("mse + auto-conditioning 5/5", dict(head="mse", condition_steps=5, ground_truth_steps=5, input_noise=0.0),
     0.0, 0.0),
    ("mse + input noise 0.1 + rollout noise 0.1", dict(head="mse", condition_steps=0, input_noise=0.1), 0.0, 0.1),
    ("mdn K=5, T=1", dict(head="mdn", mixtures=5, condition_steps=0, input_noise=0.0), 1.0, 0.0),
    ("mdn K=5 + auto-cond 5/5 + input noise 0.1, T=1",
     dict(head="mdn", mixtures=5, condition_steps=5, ground_truth_steps=5, input_noise=0.1), 1.0, 0.0),
    ("mse + rollout noise 0.6", dict(head="mse", condition_steps=0, input_noise=0.0), 0.0, 0.6),
    ("mdn K=5 + input noise 0.1, T=1.1", {}, 1.1, 0.0),
    ("mdn K=5 + input noise 0.1 (quick_lstm.flags, with its rollout recipe)", {}, None, None),
]


@benchmark("dancing")
def bench_dancing(repeats=REPEATS):
    """The anti-freeze table (BENCHMARKS.md, "Keeping the dancer dancing"): 18,000 frames of the synthetic
    dancer (the demo's), the quick autoencoder (its script, flags/quick_autoencoder.flags), then each
    LSTM variant at the size of flags/quick_lstm.flags, rolled out for 60,000 frames from the first 50
    latents and judged by `tf_dance.metrics` against the training latents: longest freeze (s), motion of
    the last 1,000 frames vs. the data's, pose coverage vs. an equal length of data, share of 1-second
    windows that are near-copies, share of 1-second windows that recur within the rollout (repetition),
    training seconds. About 15 minutes on 2 cores (the autoencoder is 5-8). Each variant runs once
    (`repeats` is unused: the figures are not speeds)."""
    import subprocess
    import sys
    import tempfile

    import numpy as np

    from tf_dance import dancer as dancer_lib
    from tf_dance import data, metrics, savedmodels, sequence_training

    flagfile = os.path.join(_ROOT, "flags", "quick_lstm.flags")
    base = sequence_training.flagfile_settings(flagfile)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")]))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        dancer = dancer_lib.dancer(_DANCING_FRAMES, seed=0)
        data.save_dataset(f"{tmp}/dancer.npz", dancer["frames"], 24.0)
        start = time.perf_counter()
        for script, *args in [
                ("train_autoencoder", f"--flagfile={_ROOT}/flags/quick_autoencoder.flags", "--seed=0",
                 f"--data={tmp}/dancer.npz", f"--workdir={tmp}/ae", f"--export_dir={tmp}/saved"),
                ("encode", f"--data={tmp}/dancer.npz", f"--encoder={tmp}/saved/encoder", f"--out={tmp}/latents.npy")]:
            subprocess.run([sys.executable, "-m", f"tf_dance.{script}", *args], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        out["autoencoder + encode seconds"] = time.perf_counter() - start
        latents = np.load(f"{tmp}/latents.npy")
        train = latents[:int(len(latents) * base.get("train_frac", sequence_training.SETTINGS["train_frac"].default))]
        reference = metrics.Reference(train, 24.0)
        out["data: recurring 1-s windows (%)"] = 100 * reference.repetition_report(train)["data_repeat_share"]
        for i, (name, change, temperature, noise) in enumerate(_DANCING_VARIANTS):
            print(f"  {name}", flush=True)
            start = time.perf_counter()
            result = sequence_training.train_and_evaluate(f"{tmp}/latents.npy", f"{tmp}/lstm{i}", f"{tmp}/saved",
                                                          **{**base, **change, "seed": 0})
            seconds = time.perf_counter() - start
            model = savedmodels.load_sequence_model(result["export_dir"])
            if temperature is None:  # the recipe the flagfile recorded in the export
                temperature, noise = model.sampling()
                name = f"{name}, T={temperature:g}, rollout noise {noise:g}"
            generated = model.rollout(latents[:50], 60000, temperature=temperature, noise=noise, random_seed=0)
            report = reference.evaluate(generated)
            out[f"{name}: longest freeze (s)"] = report["freeze"]["longest_still_seconds"]
            out[f"{name}: motion, last 1,000 frames / data"] = report["motion"]["tail_motion_ratio"]
            out[f"{name}: pose coverage / data"] = report["coverage"]["coverage_ratio"]
            out[f"{name}: near-copy 1-s windows (%)"] = 100 * report["novelty"]["copy_share"]
            out[f"{name}: recurring 1-s windows, last {report['repetition']['frames']:,} frames (%)"] = (
                100 * report["repetition"]["repeat_share"])
            out[f"{name}: training seconds"] = seconds
    out["load average (1 min) at end"] = os.getloadavg()[0]
    return out




def run(names=None, repeats=REPEATS):
    """{benchmark name: its figures} for `names` (default all), printing each as it finishes."""
    names = list(names or _BENCHES)
    unknown = sorted(set(names) - set(_BENCHES))
    if unknown:
        raise cli.UserError(f"unknown benchmark(s) {unknown}; available: {sorted(_BENCHES)}")
    results = {}
    for name in names:
        print(f"== {name}", flush=True)
        results[name] = _BENCHES[name](repeats)
        for key, value in results[name].items():
            print(f"  {key:48s} {value:12.1f}" if isinstance(value, float) else f"  {key:48s} {value}")
    return results


@cli.main
def main(argv):
    del argv
    results = run(FLAGS.only, FLAGS.repeats)
    if FLAGS.json:
        with cli.atomic_output(FLAGS.json) as tmp, open(tmp, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=cli.parse_flags)
