"""Measures every speed figure in BENCHMARKS.md in one run and prints medians and ratios.

    python -m tf_dance.bench [--only=ingest,autoencoder,...] [--json=PATH]

Each benchmark is a function registered with `@benchmark("name")` that takes `repeats` and returns
a dict of named figures (medians over `repeats` timed runs, after a warm-up); `run(names, repeats)`
runs several from Python. Ratios are computed inside one benchmark from figures measured in the
same run, since this machine is shared.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

from tf_dance import cli, controls

FLAGS = flags.FLAGS
REPEATS = 5
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository: flags/ lives here


def _script_env(**extra):
    """The environment of a child Python: this checkout first on the path, TensorFlow's start-up lines quiet."""
    path = os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=path, **extra)


def _script(name, *args):
    """Runs `python -m tf_dance.<name> args`, as a user would, its output hidden; fails loudly."""
    subprocess.run([sys.executable, "-m", f"tf_dance.{name}", *args], env=_script_env(), check=True,
                   stdout=subprocess.DEVNULL)


def define_flags():
    flags.DEFINE_list("only", [], "Run only these benchmarks (comma separated); default all.")
    flags.DEFINE_string("json", None, "Also write the results as JSON to this path.")
    flags.DEFINE_integer("repeats", REPEATS, "Timed repetitions per figure; the median is reported.", lower_bound=1)
    flags.DEFINE_string("real_clips", None, "faithfulness: real dance clips (a video, folder or glob, as "
                        "prepare_video --video takes) for the real-footage rows; without it they are skipped.")


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


def multiply_adds(model):
    """Multiply-adds of one example through `model`'s convolutions and dense layers (nested models
    included; pooling, upsampling and activations are small beside them)."""
    import keras
    import numpy as np

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += multiply_adds(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            total += int(np.prod(layer.output.shape[1:]) * np.prod(layer.kernel.shape[:3]))
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def matmul_gflops(dtype="float32", n=1024, repeats=REPEATS):
    """Measured GFLOP/s of an n x n matrix product in TensorFlow with its default threads: what this
    machine's cores give at best, the bound for convolutions and dense layers."""
    import tensorflow as tf

    a = tf.random.stateless_normal([n, n], seed=[0, 0], dtype=dtype)
    product = tf.function(lambda a: tf.linalg.matmul(a, a))
    runs = 8
    return median_rate(lambda: [product(a) for _ in range(runs)][-1].numpy(), runs * 2 * n ** 3 / 1e9, repeats)


def ae_train_rates(filters=(8, 16, 32, 32), batch=200, steps=10, repeats=REPEATS):
    """Training images/s of the autoencoder trainer's own step (`autoencoder_training.train_step`, as
    `train_autoencoder` runs it) in float32, mixed bfloat16 (where the CPU has it natively) and with XLA,
    against Keras `fit` of the same model (float32, loss only) as the naive side, timed in turns; and the
    GFLOP/s a step reaches, to set against `matmul_gflops` (`decode_bound` reports it in the same run)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tf_dance import autoencoder, autoencoder_training

    config = autoencoder_training.check_config(dict(filters=list(filters), batch_size=batch))
    rng = np.random.default_rng(0)
    frames = ((rng.random((5 * batch, 54, 96, 1)) > 0.9) * 255).astype(np.uint8)
    batches = autoencoder_training.train_batches(tf.constant(frames), np.arange(len(frames)), batch, 0, 0)
    strategy = tf.distribute.get_strategy()
    variants = [("step float32", False, "float32"), ("step float32 XLA", True, "float32")]
    if autoencoder_training.native_bfloat16():
        variants += [("step mixed bfloat16", False, "mixed_bfloat16"),
                     ("step mixed bfloat16 XLA", True, "mixed_bfloat16")]
    runs = {}
    keras.utils.set_random_seed(0)
    *_, fitted = autoencoder_training.build((54, 96, 1), config)
    fitted.compile(fitted.optimizer, loss=autoencoder.LOSSES[config["loss"]])
    runs["Keras fit float32"] = lambda: fitted.fit(batches, steps_per_epoch=steps, shuffle=False, verbose=0)
    for name, jit, policy in variants:
        keras.utils.set_random_seed(0)
        *_, model = autoencoder_training.build((54, 96, 1), {**config, "jit_compile": jit}, policy)
        step, iterator = autoencoder_training.train_step(model, {**config, "jit_compile": jit}, strategy), iter(batches)

        def run(step=step, iterator=iterator):
            for _ in range(steps):
                loss, _ = step(iterator)
            return float(loss)
        runs[name] = run
    rates = dict(zip(runs, _round_robin_rates(list(runs.values()), steps * batch, repeats)))
    label = "autoencoder " + ",".join(map(str, filters))
    out = {f"{label}: train images/s (batch {batch}), {name}": rate for name, rate in rates.items()}
    naive = rates["Keras fit float32"]
    for name in rates:
        if name != "Keras fit float32":
            out[f"{label}: ratio {name} / Keras fit (goal >= 1.5)"] = rates[name] / naive
    default = "step mixed bfloat16" if autoencoder_training.native_bfloat16() else "step float32"
    out[f"{label}: ratio the trainer's default (--precision=auto: {default}) / Keras fit (goal >= 1.5)"] = (
        rates[default] / naive)
    gflop = 3 * 2 * multiply_adds(fitted) * batch / 1e9  # forward, and twice its work backward
    out[f"{label}: GFLOP per training step (3 x forward)"] = gflop
    for name in ("step float32", default):
        out[f"{label}: GFLOP/s of the {name}"] = gflop * rates[name] / batch
    return out


def decode_bound(filters=(32, 32, 32, 32), goal=2000, repeats=REPEATS, n=1024):
    """What decoding `goal` frames/s with the decoder of `filters` needs in GFLOP/s (its multiply-adds,
    unfolded), against the measured matrix-product GFLOP/s in float32 and bfloat16: the frames/s the
    machine's arithmetic allows at best."""
    from tf_dance import autoencoder, data

    decoder = autoencoder.build_decoder(data.HEIGHT, data.WIDTH, 1, list(filters))
    per_frame = 2 * multiply_adds(decoder) / 1e9
    label = "decoder " + ",".join(map(str, filters))
    out = {f"{label}: GFLOP per frame": per_frame,
           f"{label}: GFLOP/s that {goal:,} frames/s needs": per_frame * goal}
    for dtype in ("float32", "bfloat16"):
        peak = matmul_gflops(dtype, n, repeats)
        out[f"measured matrix product GFLOP/s, {dtype} ({n} x {n}, 2 cores)"] = peak
        out[f"{label}: frames/s at that peak ({dtype}; goal {goal:,})"] = peak / per_frame
    return out


@benchmark("autoencoder")
def bench_autoencoder(repeats=REPEATS):
    """Training images/s at batch 200 of the trainer's own step against Keras `fit` (`ae_train_rates`,
    the quick flags' model, filters 8,16,32,32), decode/encode images/s at batch 500 through the exported
    SavedModels vs. Keras `predict` for the quick model and the paper's (32,32,32,32), and the bound the
    machine's arithmetic puts on decoding at the paper's size (`decode_bound`). Random silhouettes and
    weights: speed does not depend on content."""
    import tempfile

    import numpy as np

    from tf_dance import autoencoder, savedmodels

    out = {"load average (1 min) at start": os.getloadavg()[0]}
    quick, paper = [8, 16, 32, 32], [32, 32, 32, 32]
    out.update(ae_train_rates(quick, repeats=repeats))
    rng = np.random.default_rng(0)
    frames = ((rng.random((1000, 54, 96, 1)) > 0.9) * 255).astype(np.uint8)
    latents = rng.normal(size=(2000, 128)).astype(np.float32)
    for label, filters in (("quick", quick), ("paper", paper)):
        encoder = autoencoder.build_encoder(54, 96, 1, filters)
        decoder = autoencoder.build_decoder(54, 96, 1, filters)
        with tempfile.TemporaryDirectory() as tmp:
            autoencoder.export_encoder(encoder, f"{tmp}/encoder")
            autoencoder.export_decoder(decoder, f"{tmp}/decoder")
            predict, fast, half = _round_robin_rates(
                [lambda: decoder.predict(latents, batch_size=500, verbose=0)]
                + [lambda p=p: savedmodels.decode_latents(f"{tmp}/decoder", latents, 500, precision=p)
                   for p in ("float32", "bfloat16")], len(latents), repeats)
            goal = " (goal >= 2,000)" if label == "paper" else ""
            out[f"ae_{label}_decode_images_per_s_keras_predict_b500"] = predict
            out[f"ae_{label}_decode_images_per_s_decode_latents_b500"] = fast
            out[f"ae_{label}_decode_images_per_s_decode_latents_bfloat16_b500{goal}"] = half
            out[f"ae_{label}_decode_latents_vs_predict (float32 / bfloat16)"] = \
                f"{fast / predict:.2f} / {half / predict:.2f}"
            out[f"ae_{label}_encode_images_per_s_encode_frames_b500"] = median_rate(
                lambda: savedmodels.encode_frames(f"{tmp}/encoder", frames, 500), len(frames), repeats)
    out.update(decode_bound(paper, repeats=repeats))
    out["load average (1 min) at end"] = os.getloadavg()[0]
    return out


# ---- sequence ----


@benchmark("sequence")
def bench_sequence(repeats=REPEATS):
    """The paper's 2x600 LSTM on 128-d latents: training frames/s (batch 5, seq 50) of plain Keras
    `fit` vs. the fused XLA train step; rollout frames/s of the stateful Keras model with `predict`
    per step vs. the exported `rollout` signature (batch 1 and 16), and the same at batch 1 for the demo's
    LSTM (`_demo_lstm_rollout`); and the paper's Perlin check at
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
    fit_key = "train frames/s, Keras fit (stateful LSTM)"
    out[fit_key] = median_rate(
        lambda: model.fit(x, y, batch_size=batch, shuffle=False, verbose=0), frames, repeats)
    optimizer = keras.optimizers.Adam(2e-3, clipvalue=5.0)
    step = sequence_training.make_train_step(net, optimizer, cfg)

    def fused():
        state = net.zero_state(batch)
        for window in windows:
            loss, state = step(window, state)
        return float(loss)

    fused_key = "train frames/s, the trainer's fused XLA step (goal >= 1,000)"
    out[fused_key] = median_rate(fused, frames, repeats)
    out["ratio the trainer's fused step / Keras fit"] = out[fused_key] / out[fit_key]

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

    out.update(_demo_lstm_rollout(latents, repeats))

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


def _demo_lstm_rollout(latents, repeats):
    """The demo's LSTM (flags/quick_lstm.flags: its size, mixture head and rollout recipe; random-init) at
    batch 1: the exported `rollout` signature vs. the naive loop (Keras `predict` per step, the head's most
    likely mean fed back), and the bytes of weights each frame reads."""
    import tempfile

    import numpy as np

    from tf_dance import rollout, savedmodels, sequence_model, sequence_training

    _, lstm = _demo_settings()
    dim = latents.shape[1]
    mean, std = sequence_model.standardizer(latents)
    model = sequence_model.build_model("lstm", dim, mean, std, 1, units=lstm["units"], num_layers=lstm["num_layers"],
                                       head=lstm["head"], mixtures=lstm["mixtures"])
    net, single, steps = sequence_model.make_net(model), sequence_model.stateful_copy(model, 1), 30

    def naive():
        sequence_model.reset_states(single)
        frame = latents[:1, None]
        for _ in range(steps):
            frame = net.denormalize(np.asarray(net.head.point(single.predict(frame, verbose=0))))

    out = {"demo LSTM: weights read per frame (MB, float32)": sum(int(np.prod(w.shape)) for w in model.weights) * 4e-6,
           "demo LSTM: rollout frames/s, Keras predict per step (batch 1)": median_rate(naive, steps, repeats=3)}
    with tempfile.TemporaryDirectory() as tmp:
        path = rollout.export(model, tmp, "dance_lstm", recipe=sequence_training.rollout_recipe(lstm))
        n = 4000
        out["demo LSTM: rollout frames/s, rollout signature (batch 1; goal >= 5,000)"] = median_rate(
            lambda: savedmodels.rollout(path, latents[:50], n), n, repeats)
    out["demo LSTM: ratio rollout signature / predict (batch 1; goal >= 250)"] = (
        out["demo LSTM: rollout frames/s, rollout signature (batch 1; goal >= 5,000)"]
        / out["demo LSTM: rollout frames/s, Keras predict per step (batch 1)"])
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
    import numpy as np

    seed_path = os.path.join(os.path.dirname(path), "seed.npy")
    np.save(seed_path, seed)
    env = _script_env(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
                      XLA_FLAGS="--xla_cpu_multi_thread_eigen=false")
    result = subprocess.run([sys.executable, "-c", _SINGLE_THREADED, path, str(n), seed_path], env=env,
                            capture_output=True, text=True, check=True)
    rate, seconds = map(float, result.stdout.split()[-2:])
    return {"rollout frames/s, rollout signature (batch 1, 1 thread)": rate,
            "rollout seconds, 60,000 frames (batch 1, 1 thread, once)": seconds}



# ---- faithfulness ----


_FAITHFULNESS_LSTMS = {  # name: (flagfile, extra flags); the paper's MSE recipe at the quick size (2 x 256)
    "paper MSE 2x256": ("paper_lstm.flags", ["--units=256"]),
    "recommended": (None, []),  # quick_lstm.flags on the dancer, footage_lstm.flags on footage
}


@benchmark("faithfulness")
def bench_faithfulness(repeats=REPEATS, real_clips=None):
    """The faithfulness table (BENCHMARKS.md, "faithfulness"): the autoencoder with the linear and with the
    ReLU code (`--code_activation`, otherwise identical, seed 0) on the dancer (18,000 frames, seed 0,
    flags/quick_autoencoder.flags) and on real clips given by `real_clips` (`--real_clips`: anything
    `prepare_video --video` takes, prepared with its defaults, flags/footage_autoencoder.flags; skipped when not
    given); on each one's latents the
    paper's MSE LSTM (flags/paper_lstm.flags at 2 x 256) and the recommended setting (flags/quick_lstm.flags on the
    dancer; flags/footage_lstm.flags at the batch size the demo fits to the clips), each rolled out for 60,000
    frames by `generate` (random_seed 0, the export's recipe) and judged by `evaluate` on the second half. Every
    step is its script, as a user runs it. 1.5-2 hours on 2 cores (the 7,000-step footage autoencoders dominate).
    Runs once (`repeats` is unused: the figures are not speeds)."""
    import json as json_lib
    import tempfile

    from tf_dance import dancer as dancer_lib
    from tf_dance import data, metrics, sequence_training

    flags_dir = os.path.join(_ROOT, "flags")

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        dancer = dancer_lib.dancer(18000, seed=0)  # the demo's dancer
        data.save_dataset(f"{tmp}/dancer.npz", dancer["frames"], 24.0)
        sets = [("dancer", f"{tmp}/dancer.npz", "quick_autoencoder.flags", "quick_lstm.flags", [])]
        if real_clips:
            _script("prepare_video", f"--video={real_clips}", f"--out={tmp}/real.npz")
            fitted, _ = sequence_training.lstm_sizing(f"{tmp}/real.npz",
                                                     os.path.join(flags_dir, "footage_lstm.flags"), 0)
            sets.append(("real clips", f"{tmp}/real.npz", "footage_autoencoder.flags", "footage_lstm.flags", fitted))
        for label, path, ae_flags, dancing_flags, dancing_extra in sets:
            for code in ("linear", "relu"):
                run = f"{tmp}/{label.replace(' ', '_')}_{code}"
                print(f"  {label}, {code} code", flush=True)
                _script("train_autoencoder", f"--flagfile={flags_dir}/{ae_flags}", f"--code_activation={code}",
                        "--seed=0", f"--data={path}", f"--workdir={run}/ae", f"--export_dir={run}/saved")
                with open(f"{run}/ae/eval.json") as f:
                    out[f"{label}, {code}: held-out IoU"] = json_lib.load(f)["metrics"]["iou"]
                _script("encode", f"--data={path}", f"--encoder={run}/saved/encoder", f"--out={run}/latents.npy",
                        "--noprogress")
                for name, (flagfile, extra) in _FAITHFULNESS_LSTMS.items():
                    flagfile, extra = (flagfile, extra) if flagfile else (dancing_flags, dancing_extra)
                    lstm = f"{run}/{name.split()[0]}"
                    _script("train_lstm", f"--flagfile={flags_dir}/{flagfile}", *extra, "--dim=0", "--seed=0",
                            f"--latents={run}/latents.npy", f"--workdir={lstm}/work", f"--export_dir={lstm}/saved")
                    _script("generate", f"--lstm={lstm}/saved/dance_lstm", f"--encoder={run}/saved/encoder",
                            f"--decoder={run}/saved/decoder", f"--data={path}", f"--latents={run}/latents.npy",
                            "--frames=60000", "--seed=0", f"--out={lstm}/dance.mp4", "--noprogress")
                    _script("evaluate", f"--generated={lstm}/dance_latents.npy", f"--latents={run}/latents.npy",
                            f"--data={path}", f"--decoder={run}/saved/decoder", "--seed=0",
                            f"--out_dir={lstm}/eval", "--noprogress")
                    with open(f"{lstm}/eval/metrics.json") as f:
                        evaluation = json_lib.load(f)
                    key = f"{label}, {code}, {name}"
                    for goal_name, goal in metrics.GOALS.items():
                        value = evaluation["goals"][goal_name]["values"][0]
                        out[f"{key}: {goal.label}"] = None if value is None else goal.scale * value
                    out[f"{key}: verdicts"] = ", ".join(k for k, v in evaluation["verdicts"].items() if v) or "none"
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
    models of the demo's size (flags/quick_autoencoder.flags, flags/quick_lstm.flags): the rollout and
    decoding take the same time with any weights; libx264 takes longer on a noisy picture, and the random
    decoder draws noisy gray frames (trained ones draw silhouettes). Seeded from latents; writes mp4, GIF (first 600
    frames), sheet and latents.
    For 60,000 frames also the busy seconds of each stage (rollout, decode and write run in threads of
    their own and overlap, so they add up to more than the wall time), the CPU seconds of this process and
    of ffmpeg, and the `generate` command as a user runs it (wall with imports, peak RSS). The LSTM is
    exported with the flagfile's rollout recipe, as the demo's is; its rollout is also timed without the
    recipe's sampling controls (smoothing and the like cost ops on every frame) and with coherence added (the
    footage recipe's: correlated normals carried from frame to frame)."""
    import tempfile

    import keras
    import numpy as np

    from tf_dance import autoencoder, cli, data, generation, rollout, savedmodels, sequence_model, sequence_training

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
                                           batch_size=1, units=units, num_layers=layers, head=lstm["head"],
                                           mixtures=lstm["mixtures"])
        rollout.export(model, tmp, "dance_lstm")
        # The same weights exported again with the demo flagfile's rollout recipe (its sampling controls, e.g.
        # smoothing, are baked into the graph), as generate runs the demo's model.
        rollout.export(model, tmp, "dance_lstm", recipe=sequence_training.rollout_recipe(lstm))
        rollout.export(model, tmp, "dance_lstm", recipe=dict(sequence_training.rollout_recipe(lstm), coherence=0.96))
        plain, models, coherent = (savedmodels.load_models(tmp, lstm=os.path.join(tmp, "dance_lstm", str(v)))
                                   for v in (1, 2, 3))
        seed = np.random.default_rng(0).normal(size=(50, dim)).astype(np.float32)

        def run(frames, models=models):
            timings = {}
            result = generation.write_dance(os.path.join(tmp, "out", "dance.mp4"),
                                            generation.dance_chunks(models, seed, frames, timings=timings), 24.0,
                                            frames=frames)
            return result["seconds"], dict(timings, write=result["write_seconds"],
                                           **{"write: of which GIF and sheet at the end": result["finish_seconds"]})

        first = time.perf_counter()
        run(600)
        out["generate 600 frames, first call in a process (s)"] = time.perf_counter() - first
        times = []
        for _ in range(repeats):
            times.append(run(600)[0])
        out["generate 600 frames, warm (median s)"] = statistics.median(times)
        before = os.times()
        seconds, stages = run(60000)
        after = os.times()
        out["generate 60,000 frames, warm (once, s; goal < 20)"] = seconds
        for stage, value in stages.items():
            out[f"  60,000 frames: {stage}, busy (s; the stages overlap)"] = value
        out["  60,000 frames: CPU time of this process (s)"] = after.user + after.system - before.user - before.system
        out["  60,000 frames: CPU time of ffmpeg (s)"] = (after.children_user + after.children_system
                                                        - before.children_user - before.children_system)
        cpu = out["  60,000 frames: CPU time of this process (s)"] + out["  60,000 frames: CPU time of ffmpeg (s)"]
        out["  60,000 frames: CPU time / 2 cores, the floor of the wall time (s; goal < 20)"] = cpu / 2
        out["  decoding precision (generate's default: bfloat16 where the CPU computes it)"] = models.decoder.precision
        wide = savedmodels.load_models(tmp, lstm=os.path.join(tmp, "dance_lstm", "2"), decode_precision="float32")
        run(600, wide)
        out["  60,000 frames decoded in float32 (s)"] = run(60000, wide)[0]
        run(600, plain)
        out["  60,000 frames without the recipe's sampling controls: rollout (s)"] = run(60000, plain)[1]["rollout"]
        run(600, coherent)
        out["  60,000 frames with coherence 0.96 added: rollout (s)"] = run(60000, coherent)[1]["rollout"]
        np.save(os.path.join(tmp, "seed.npy"), seed)
        command = ["--model_dir", tmp, "--lstm", os.path.join(tmp, "dance_lstm", "2"), "--latents",
                   os.path.join(tmp, "seed.npy"), "--seed_frames=50", "--frames=60000", "--noprogress",
                   "--out", os.path.join(tmp, "cli", "dance.mp4")]
        start = time.perf_counter()
        _script("generate", *command)
        out["python -m tf_dance.generate --frames=60000, wall incl. imports (s)"] = time.perf_counter() - start
        out["  its peak RSS, the largest process (MB)"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["rollout recipe of the timed export (flags/quick_lstm.flags)"] = ", ".join(
        f"{k} {v:g}" for k, v in sequence_training.rollout_recipe(lstm).items())
    sixty = out["generate 60,000 frames, warm (once, s; goal < 20)"]
    out["ratio 60,000 / 600 frames (warm)"] = sixty / out["generate 600 frames, warm (median s)"]
    out["generated frames/s, 60,000 frames"] = 60000 / sixty
    return out




# ---- dancing ----

_DANCING_FRAMES = 18000  # the demo's data (flags/quick.flags) and the paper's dataset size
# Each row: (name, LSTM flagfile, training settings over it, rollout recipe over the flagfile's). Rows that
# share a flagfile and training settings share their trainings (one per seed): only the rollout differs.
# Plain latents (the synthetic dancer's 128-d):
_DANCING_PLAIN = [
    ("quick_lstm.flags, T=1, noise 0.3 (its earlier recipe)", "quick_lstm.flags", {},
     dict(temperature=1.0, noise=0.3, width=1.0, smoothing=0.0)),
    ("quick_lstm.flags, T=1, noise 1.2", "quick_lstm.flags", {}, dict(temperature=1.0, noise=1.2, smoothing=0.0)),
    ("quick_lstm.flags, T=1, noise 1.2, smoothing 0.5 (its recipe until 2026-11-26)", "quick_lstm.flags", {},
     dict(temperature=1.0, noise=1.2, smoothing=0.5)),
    ("quick_lstm.flags with the recipe calibrated for each training", "quick_lstm.flags", {}, {}),
]
# Staged latents (--stage autoencoders: 128 pose + 3 box dims):
_NO_CONTROLS = dict(controls.SAMPLING)
_FOOTAGE_BEFORE_COHERENCE = dict(_NO_CONTROLS, temperature=1.0, noise=1.2, box_dims=3, box_smoothing=0.95)
_PLACE = dict(box_residual=False)  # footage_lstm.flags before its box moved by steps: the box as a place
_DANCING_STAGED = [
    ("quick_lstm.flags (batch 4), T=1, noise 0.3 (the earlier footage setting)", "quick_lstm.flags",
     dict(batch_size=4, dim=0), dict(_NO_CONTROLS, temperature=1.0, noise=0.3)),
    ("footage_lstm.flags without the residual box (dropout 0.5, best epoch), T=1, noise 0.3", "footage_lstm.flags",
     _PLACE, dict(_NO_CONTROLS, temperature=1.0, noise=0.3)),
    ("footage_lstm.flags without the residual box, T=1, noise 0.8, box smoothing 0.95 (its recipe until "
     "2026-11-26)", "footage_lstm.flags", _PLACE,
     dict(_NO_CONTROLS, temperature=1.0, noise=0.8, box_dims=3, box_smoothing=0.95)),
    ("footage_lstm.flags without the residual box, T=1, noise 1.2, box smoothing 0.95 (its recipe before "
     "coherence)", "footage_lstm.flags", _PLACE, _FOOTAGE_BEFORE_COHERENCE),
    ("footage_lstm.flags (box loss weight 8, the box moving by steps within the data's stage) with its recorded "
     "recipe: T=1.4, noise 1.6, coherence 0.96, box smoothing 0.95, box kept in the picture", "footage_lstm.flags",
     {}, {}),
    ("footage_lstm.flags without the residual box and without the box loss weight (1 instead of 8), its recipe",
     "footage_lstm.flags", dict(_PLACE, box_loss_weight=1.0), {}),
    ("footage_lstm.flags without the residual box, its recipe without keeping the box in the picture",
     "footage_lstm.flags", _PLACE,
     dict(_NO_CONTROLS, temperature=1.4, noise=1.6, coherence=0.96, box_dims=3, box_smoothing=0.95)),
    ("footage_lstm.flags without the residual box, before coherence, the recipe calibrated for each training over "
     "noise 1.2/1.5/2 x smoothing 0/0.3/0.5", "footage_lstm.flags",
     dict(_PLACE, calibrate_frames=12000, calibrate_noise=[1.2, 1.5, 2.0], calibrate_smoothing=[0.0, 0.3, 0.5],
          **{f"rollout_{k}": v for k, v in _FOOTAGE_BEFORE_COHERENCE.items()}), {}),
    ("footage_lstm.flags without the residual box (the box as a place, pulled to the middle), its recipe",
     "footage_lstm.flags", _PLACE, {}),
]
# The rows the flagfiles make (bold in BENCHMARKS.md); a row with no recipe rolls out with what the export recorded.
_DANCING_RECOMMENDED = {"plain": 3, "staged": 4}


def define_dancing_flags():
    flags.DEFINE_list("dancing_data", [], "dancing: datasets as name=path.npz (default: the embedded dancer, "
                      f"{_DANCING_FRAMES:,} frames, seed 0, as 'dancer').")
    flags.DEFINE_list("dancing_staged", [], "dancing: names of the datasets to encode with a staged autoencoder "
                      "(pose + 3 stage-box dims; trained with flags/footage_autoencoder.flags); the others use "
                      "flags/quick_autoencoder.flags.")
    flags.DEFINE_list("dancing_models", [], "dancing: name=dir of an already trained autoencoder (a saved_models "
                      "root with encoder/ and decoder/) to use for that dataset instead of training one.")
    flags.DEFINE_list("dancing_seeds", ["0", "1", "2"], "dancing: LSTM training seeds (one rollout each).")
    flags.DEFINE_integer("dancing_frames", 60000, "dancing: frames per rollout (judged on the second half).",
                         lower_bound=100)
    flags.DEFINE_enum("dancing_rows", "all", ["all", "recommended"], "dancing: every row of the table, or only the "
                      "rows the flagfiles make (bold in BENCHMARKS.md: their recorded recipes, every seed).")
    flags.DEFINE_string("dancing_workdir", None, "dancing: keep autoencoders, latents, LSTMs and the evaluations "
                        "(metrics.json, report.md, contact sheets of the last frames) here; a rerun reuses what it "
                        "finds. Default: a temporary directory.")
    flags.register_validator("dancing_seeds", lambda v: all(s.strip().isdigit() for s in v),
                             "--dancing_seeds must be non-negative integers")
    flags.register_validator("dancing_data", lambda v: all("=" in s for s in v),
                             "--dancing_data entries must be name=path.npz")
    flags.register_validator("dancing_models", lambda v: all("=" in s for s in v),
                             "--dancing_models entries must be name=dir")


def _pairs(items, what):
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name or not value:
            raise cli.UserError(f"{what} entries must be name=value, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def dancing_options():
    """The --dancing_* flags as `bench_dancing` keyword arguments (defaults when the flags are not defined)."""
    if "dancing_data" not in FLAGS:
        return {}
    return dict(datasets=_pairs(FLAGS.dancing_data, "--dancing_data"), staged=set(FLAGS.dancing_staged),
                models=_pairs(FLAGS.dancing_models, "--dancing_models"), seeds=[int(s) for s in FLAGS.dancing_seeds],
                frames=FLAGS.dancing_frames, workdir=FLAGS.dancing_workdir, rows=FLAGS.dancing_rows)


def _autoencoder(name, path, workdir, staged, models):
    """(saved_models dir with encoder/ and decoder/, latents path) for one dataset; reuses what `workdir` holds."""
    from tf_dance import savedmodels
    saved = models.get(name) or os.path.join(workdir, "saved")
    latents = os.path.join(workdir, "latents.npy")
    if name not in models and not os.path.isdir(os.path.join(saved, "decoder")):
        flagfile = "footage_autoencoder.flags" if staged else "quick_autoencoder.flags"
        _script("train_autoencoder", f"--flagfile={_ROOT}/flags/{flagfile}", "--seed=0", f"--data={path}",
                 f"--workdir={workdir}/ae", f"--export_dir={saved}")
    encoder, decoder = savedmodels.resolve_pair(saved, saved)
    if not os.path.exists(latents):
        _script("encode", f"--data={path}", f"--encoder={encoder}", f"--out={latents}", "--noprogress")
    return decoder, latents


@benchmark("dancing")
def bench_dancing(repeats=REPEATS, datasets=None, staged=(), models=None, seeds=(0, 1, 2), frames=60000,
                  workdir=None, rows="all"):
    """The dancing table (BENCHMARKS.md, "dancing"): for each dataset (default the embedded
    18,000-frame dancer), an autoencoder (trained, or reused from `models`/`workdir`), then every row of
    `_DANCING_PLAIN` (or `_DANCING_STAGED` for the `staged` datasets) trained once per seed (its export's recipe
    calibrated with the dataset's decoder where the flagfile or the row asks for it), rolled out with the row's
    recipe (without one: the export's) for `frames` frames from the first 50 latents and judged on the second
    half by `evaluate`'s measures (`report.evaluate_dance` with the decoder): longest freeze, on-screen motion vs.
    the data's, recurring one-second windows (and the data's share), pose coverage, stage coverage; each as the
    range over the seeds
    (all `seeds` for the recommended row, the first for the others), and whether every seed meets every goal.
    footage_lstm.flags rows use the batch size the demo fits to short footage. Each evaluation (metrics.json,
    report.md, the contact sheet of the last frames `figure7_last_frames.png`) stays under
    `<workdir>/<dataset>/eval/row<i>/`. rows="recommended": only the rows the flagfiles make. `repeats` is
    unused."""
    import tempfile

    import keras
    import numpy as np

    from tf_dance import dancer as dancer_lib
    from tf_dance import data, metrics, report, rollout, savedmodels, sequence_training

    models = dict(models or {})
    out = {"load average (1 min) at start": os.getloadavg()[0]}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = workdir or tmp
        if not datasets:
            path = os.path.join(root, "dancer.npz")
            if not os.path.exists(path):
                os.makedirs(root, exist_ok=True)
                data.save_dataset(path, dancer_lib.dancer(_DANCING_FRAMES, seed=0)["frames"], 24.0)
            datasets = {"dancer": path}
        for name, path in datasets.items():
            kind = "staged" if name in staged else "plain"
            where = os.path.join(root, name)
            os.makedirs(where, exist_ok=True)
            start = time.perf_counter()
            decoder, latents_path = _autoencoder(name, path, where, kind == "staged", models)
            out[f"{name}: autoencoder + encode seconds (encode only when reused)"] = time.perf_counter() - start
            _, fps, _ = data.load_dataset(path)
            latents = data.load_latents(latents_path)
            clips = data.load_latent_clips(latents_path, len(latents))
            trained = {}
            for i, (label, flagfile, change, recipe) in _dancing_rows(kind, rows):
                print(f"  {name}: {label}", flush=True)
                base = sequence_training.flagfile_settings(os.path.join(_ROOT, "flags", flagfile))
                if flagfile == "footage_lstm.flags":  # as the demo fits it to short footage
                    fitted, _ = sequence_training.lstm_sizing(path, os.path.join(_ROOT, "flags", flagfile),
                                                             os.path.getmtime(path))
                    base["batch_size"] = int(fitted[0].split("=")[1])
                generated, seconds, recipes = [], [], []
                row_seeds = list(seeds) if i == _DANCING_RECOMMENDED[kind] else list(seeds)[:1]
                for seed in row_seeds:
                    key = _training_key(flagfile, change, seed)
                    if key not in trained:
                        t = time.perf_counter()
                        run = os.path.join(where, f"lstm_{len(trained)}")
                        cfg = {**base, **change, "seed": seed, "calibrate_decoder": decoder, "calibrate_fps": fps}
                        result = sequence_training.train_and_evaluate(
                            latents_path, run, os.path.join(run, "saved"),
                            load_decoder=savedmodels.calibration_decoder, **cfg)
                        trained[key] = (os.path.join(run, "model.keras"), sequence_training.resolve_config(cfg),
                                        time.perf_counter() - t, savedmodels.record(result["export_dir"])["rollout"])
                    model_path, cfg, train_seconds, recorded = trained[key]
                    settings = {**sequence_training.rollout_recipe(cfg), **recipe} if recipe else dict(recorded)
                    recipes.append(settings)
                    module = rollout.ServingModule(keras.models.load_model(model_path),
                                                   sampling={k: settings[k] for k in rollout.SAMPLING})
                    seed_frames = latents[:50][None]
                    generated.append(module.rollout(seed_frames, frames, float(settings["temperature"]),
                                                    float(settings["noise"]), 0)["frames"].numpy()[0])
                    seconds.append(train_seconds)
                result = report.evaluate_dance(np.stack(generated), latents, fps,
                                               os.path.join(where, "eval", f"row{i}"), decoder_dir=decoder,
                                               progress=False,
                                               reference_options=dict(clips=clips, seed=0))
                goals = result["goals"]
                row = dict(dataset=name, row=label, recommended=i == _DANCING_RECOMMENDED[kind],
                           recipes=recipes, seeds=row_seeds,
                           eval_dir=os.path.join(where, "eval", f"row{i}"), train_seconds=seconds,
                           **{k: g["values"] for k, g in goals.items()},
                           **{f"data_{k}": goals[k]["data"][0] for k, g in metrics.GOALS.items() if g.show_data},
                           all_goals_met=all(g["passed"] for g in goals.values()))
                results.append(row)
                prefix = f"{name} | {label}"
                for goal_name, goal in metrics.GOALS.items():
                    data_value = (f", data {goal.scale * row[f'data_{goal_name}']:.1f}" if goal.show_data
                                  and row[f"data_{goal_name}"] is not None else "")
                    out[f"{prefix}: {goal.label}{data_value}"] = _span(row[goal_name], goal.scale)
                out[f"{prefix}: every goal met (all seeds)"] = row["all_goals_met"]
        out["load average (1 min) at end"] = os.getloadavg()[0]
        out["table"] = dancing_table(results)
        print(out["table"])
        if workdir:
            table_path = os.path.join(workdir, f"dancing_{'_'.join(datasets)}.json")
            with cli.atomic_output(table_path) as tmp_json, open(tmp_json, "w") as f:
                json.dump(results, f, indent=2, default=float)
    return out


def _dancing_rows(kind, rows="all"):
    """(index, row) of the "plain" or "staged" table to run: every row, or (rows="recommended") the flagfile's."""
    table = _DANCING_STAGED if kind == "staged" else _DANCING_PLAIN
    return [(i, row) for i, row in enumerate(table) if rows == "all" or i == _DANCING_RECOMMENDED[kind]]


def _training_key(flagfile, change, seed):
    """Rows whose LSTM trains the same way share one training (changes may hold lists, hence JSON)."""
    return flagfile, json.dumps(change, sort_keys=True), seed


def _span(values, scale=1.0):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    lo, hi = scale * min(values), scale * max(values)
    return f"{lo:.2f}" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}"


def dancing_table(rows):
    """The BENCHMARKS.md table: one line per dataset and row (a column per goal), the recommended one in bold."""
    from tf_dance import metrics
    goals = metrics.GOALS.items()
    lines = ["| data | setting | " + " | ".join(g.label + (" (data)" if g.show_data else "") for _, g in goals)
             + " | all goals |", "|---|---|" + "---:|" * len(goals) + "---|"]
    for r in rows:
        cells = [r["dataset"], r["row"]]
        for name, goal in goals:
            cell = _span(r.get(name, []), goal.scale)
            if goal.show_data and r.get(f"data_{name}") is not None:
                cell += f" ({goal.scale * r[f'data_{name}']:.1f})"
            cells.append(cell)
        cells.append("yes" if r["all_goals_met"] else "no")
        if r["recommended"]:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- music ----


def define_music_flags():
    flags.DEFINE_integer("music_dancer_frames", _DANCING_FRAMES, "music: frames of the dancer with its procedural "
                         "songs to train on.", lower_bound=1000)
    flags.DEFINE_enum("music_latents", "autoencoder", ["autoencoder", "poses"], "music: what the LSTMs learn: the "
                      "latents of an autoencoder trained with flags/quick_autoencoder.flags, or (faster, for a reduced "
                      "run) the dancer's own pose parameters.")
    flags.DEFINE_integer("music_frames", 60000, "music: frames of each rollout on the held-out song.", lower_bound=1000)
    flags.DEFINE_list("music_seeds", ["0", "1", "2"], "music: LSTM training seeds (a conditioned and an unconditioned "
                      "training each).")
    flags.DEFINE_list("music_lstm", [], "music: train_lstm settings over flags/quick_lstm.flags as name=value (e.g. "
                      "epochs=10,calibrate_frames=0 for a reduced run).")
    flags.DEFINE_string("music_workdir", None, "music: keep the dataset, latents and trainings here; a rerun reuses "
                        "them. Default: a temporary directory.")
    flags.register_validator("music_seeds", lambda v: all(s.strip().isdigit() for s in v),
                             "--music_seeds must be non-negative integers")


def music_options():
    """The --music_* flags as `bench_music` keyword arguments (defaults when the flags are not defined)."""
    if "music_seeds" not in FLAGS:
        return {}
    change = {k: sequence_training_value(k, v) for k, v in _pairs(FLAGS.music_lstm, "--music_lstm").items()}
    return dict(dancer_frames=FLAGS.music_dancer_frames, latents=FLAGS.music_latents, frames=FLAGS.music_frames,
                seeds=[int(s) for s in FLAGS.music_seeds], change=change, workdir=FLAGS.music_workdir)


def sequence_training_value(name, text):
    """A train_lstm setting's value parsed from text, as its flag would parse it."""
    from tf_dance import sequence_training
    if name not in sequence_training.SETTINGS:
        raise cli.UserError(f"--music_lstm: unknown train_lstm setting {name!r}")
    default = sequence_training.SETTINGS[name].default
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(default, list):
        return [float(x) for x in text.split(";") if x]
    return type(default)(text)


@benchmark("music")
def bench_music(repeats=REPEATS, dancer_frames=_DANCING_FRAMES, latents="autoencoder", frames=60000, seeds=(0, 1, 2),
                change=None, workdir=None):
    """The music goals (docs/music.md): the embedded dancer dancing to its procedural songs (`dancer_frames`
    frames, seed 0), encoded (or its pose parameters with `latents="poses"`), an LSTM trained with
    flags/quick_lstm.flags (+ `change`) with and without --music per seed; each rolled out for `frames` frames
    with its recorded recipe from the first 50 latents on a song no training heard (`musicality.held_out_song`),
    and the conditioned one on the tempo-step song. Figures: beat alignment of the data, of each conditioned
    and unconditioned rollout, their ratio and margin, the tempo ratios' largest error, the long-rollout goals
    (`evaluate`'s, with the decoder's on-screen and stage measures for encoded latents) the conditioned rollout
    misses, and whether every seed meets every goal. `repeats` is unused."""
    import tempfile

    import keras
    import numpy as np

    from tf_dance import dancer as dancer_lib
    from tf_dance import data, musicality, report, rollout, savedmodels, sequence_training

    out = {"load average (1 min) at start": os.getloadavg()[0]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = workdir or tmp
        os.makedirs(root, exist_ok=True)
        path = os.path.join(root, "dancer_music.npz")
        fps = 24.0
        if not os.path.exists(path):
            d = dancer_lib.dancer(dancer_frames, seed=0, music=True)
            data.save_dataset(path, d["frames"], fps, music=d["music"], music_names=d["music_names"], poses=d["poses"])
        if latents == "poses":
            latents_path = os.path.join(root, "poses.npy")
            if not os.path.exists(latents_path):
                with np.load(path, allow_pickle=False) as f:
                    poses, song = f["poses"].astype(np.float32), (f["music"], f["music_names"])
                np.save(latents_path, poses)
                data.save_latent_music(latents_path, poses, *song, fps)
            decoder = None
        else:
            decoder, latents_path = _autoencoder("dancer", path, root, False, {})
        z = data.load_latents(latents_path)
        heard = data.load_latent_music(latents_path, z)[0]
        song = musicality.held_out_song(frames, fps)["features"]
        base = {**sequence_training.flagfile_settings(os.path.join(_ROOT, "flags", "quick_lstm.flags")),
                **sequence_training.flagfile_settings(os.path.join(_ROOT, "flags", "music_lstm.flags")), "dim": 0,
                **(change or {})}
        if decoder:
            base.update(calibrate_decoder=decoder, calibrate_fps=fps)

        def trained(seed, with_music):
            run = os.path.join(root, f"lstm_{'music' if with_music else 'plain'}_{seed}")
            if not os.path.exists(os.path.join(run, "export.json")):
                heard_only = {} if with_music else {"rollout_beat_guidance": 0.0}  # guidance needs the music
                result = sequence_training.train_and_evaluate(latents_path, run, os.path.join(run, "saved"),
                                                              **{**base, "seed": seed, "music": with_music,
                                                                 **heard_only})
                with open(os.path.join(run, "export.json"), "w") as f:
                    json.dump({"export_dir": result["export_dir"]}, f)
            with open(os.path.join(run, "export.json")) as f:
                record = savedmodels.record(json.load(f)["export_dir"])
            recipe = record["rollout"]
            module = rollout.ServingModule(keras.models.load_model(os.path.join(run, "model.keras")),
                                           sampling={k: recipe[k] for k in rollout.SAMPLING},
                                           beat_speed=(record.get("music") or {}).get("beat_speed"))
            return lambda length, features=None: module.rollout(
                z[None, :50], length if features is None else features[None], float(recipe["temperature"]),
                float(recipe["noise"]), 0)["frames"].numpy()[0]

        for seed in seeds:
            t = time.perf_counter()
            conditioned, plain = trained(seed, True), trained(seed, False)
            print(f"  music: trained seed {seed} ({time.perf_counter() - t:.0f} s); rolling out", flush=True)
            dance = conditioned(len(song), song)
            m = musicality.measure(lambda features: conditioned(len(features), features), fps, song, z, heard,
                                   unconditioned=plain, seed=seed, dance=dance)
            judged = report.evaluate_dance(dance, z, fps, os.path.join(root, "eval", f"seed{seed}"),
                                           decoder_dir=decoder, progress=False, reference_options=dict(seed=0))
            m["long_rollout_goals"] = {k: dict(value=g["values"][0], passed=g["passed"])
                                       for k, g in judged["goals"].items() if g["passed"] is not None}
            rows.append(m)
            missed = [k for k, g in m["long_rollout_goals"].items() if not g["passed"]]
            out[f"seed {seed}: long-rollout goals missed on the song"] = ", ".join(missed) or "none"
            follow = m["tempo_follow"]
            out[f"seed {seed}: beat alignment, conditioned / unconditioned / data"] = (
                f"{m['alignment']:.3f} / {m['unconditioned_alignment']:.3f} / {m['data_alignment']:.3f}")
            out[f"seed {seed}: movement tempo per section (BPM; song {follow['song_tempi']})"] = \
                ", ".join(f"{v:.1f}" for v in follow["tempi"])
            out[f"seed {seed}: tempo ratios (song's {follow['expected']})"] = \
                ", ".join(f"{v:.3f}" for v in follow["ratios"])
        ratio = [r["alignment"] / r["data_alignment"] for r in rows]
        margin = [r["alignment"] - r["unconditioned_alignment"] for r in rows]
        out["beat alignment / data's (goal >= 0.8)"] = _span(ratio)
        out["beat alignment - unconditioned's"] = _span(margin)
        out["tempo follow, largest error (%; goal <= 10)"] = _span([r["tempo_follow"]["error"] for r in rows], 100)
        out["every goal met (all seeds)"] = all(g["passed"] for r in rows
                                                for g in [*r["goals"].values(), *r["long_rollout_goals"].values()])
        out["load average (1 min) at end"] = os.getloadavg()[0]
        if workdir:
            with cli.atomic_output(os.path.join(workdir, "music.json")) as tmp_json, open(tmp_json, "w") as f:
                json.dump(rows, f, indent=2, default=float)
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
        options = dancing_options() if name == "dancing" else music_options() if name == "music" else {}
        if name == "faithfulness" and "real_clips" in FLAGS:
            options = dict(real_clips=FLAGS.real_clips)
        results[name] = _BENCHES[name](repeats, **options)
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
    define_dancing_flags()
    define_music_flags()
    app.run(main, flags_parser=cli.parse_flags)
