"""Measures every speed figure in BENCHMARKS.md in one run and prints medians and ratios.

    python -m tf_dance.bench [--only=ingest,autoencoder,...] [--json=PATH]

Each benchmark is a function registered with `@benchmark("name")` that returns a dict of
named figures (medians over `--repeats` timed runs, after a warm-up). Ratios are computed
inside one benchmark from figures measured in the same run, since this machine is shared.
"""

import json
import statistics
import time

from absl import app, flags

from tf_dance import cli

FLAGS = flags.FLAGS
flags.DEFINE_list("only", [], "Run only these benchmarks (comma separated); default all.")
flags.DEFINE_string("json", None, "Also write the results as JSON to this path.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions per figure; the median is reported.", lower_bound=1)

_BENCHES = {}


def benchmark(name):
    def register(fn):
        _BENCHES[name] = fn
        return fn
    return register


def median_rate(fn, items, repeats=None, warmup=1):
    """Items per second of `fn()` (which processes `items` items): median over repeats."""
    for _ in range(warmup):
        fn()
    rates = []
    for _ in range(repeats or FLAGS.repeats):
        t = time.perf_counter()
        fn()
        rates.append(items / (time.perf_counter() - t))
    return statistics.median(rates)


# ---- section: ingest (data engineer) ----


@benchmark("ingest")
def ingest():
    """Synthesize 18,000 dancer frames; decode a 480x270 H.264 source to 96x54 datasets."""
    import os
    import tempfile

    from tf_dance import synthesize, video

    n = 18000
    synth = median_rate(lambda: synthesize.dancer(n, seed=0), n,
                        repeats=min(3, FLAGS.repeats), warmup=0)
    frames = synthesize.dancer(2400, seed=1)["frames"]
    results = {"synthesize_dancer_frames_per_s": synth,
               "synthesize_dancer_18000_frames_s": n / synth}
    with tempfile.TemporaryDirectory() as tmp:
        source = video.write_video(os.path.join(tmp, "src.mp4"), frames, 24, scale=5)
        for name, kwargs in (("gray", {}), ("rgb", dict(channels=3)),
                             ("gray_crop_threshold", dict(fit="crop", threshold=128)),
                             ("gray_to_10fps", dict(fps=10))):
            results[f"prepare_480x270_{name}_source_frames_per_s"] = median_rate(
                lambda: video.read_video(source, progress=False, **kwargs), len(frames))
    gray = results["prepare_480x270_gray_source_frames_per_s"]
    results["prepare_gray_vs_1000_fps_goal"] = gray / 1000.0
    return results


# ---- end section: ingest ----

# ---- section: autoencoder (autoencoder engineer) ----

@benchmark("autoencoder")
def bench_autoencoder():
    """Training images/s of Keras `fit` (plain, XLA, bfloat16) and decode/encode images/s at batch 500,
    for the quick flags' model (filters 8,16,32,32) on random silhouettes."""
    import tempfile

    import keras
    import numpy as np
    import tensorflow as tf

    from tf_dance import autoencoder, encode, train_autoencoder

    config = train_autoencoder.check_config(dict(filters=[8, 16, 32, 32], batch_size=200))
    rng = np.random.default_rng(0)
    frames = ((rng.random((1000, 54, 96, 1)) > 0.9) * 255).astype(np.uint8)
    table = tf.constant(frames)
    batches = train_autoencoder.train_batches(table, np.arange(len(frames)), 200, 0, 0)
    out, steps = {}, 4
    variants = [("fit_float32", False, "float32"), ("fit_float32_xla", True, "float32")]
    if train_autoencoder.native_bfloat16():
        variants.append(("fit_mixed_bfloat16", False, "mixed_bfloat16"))
    for name, jit, policy in variants:
        keras.utils.set_random_seed(0)
        *_, model = train_autoencoder.build((54, 96, 1), {**config, "jit_compile": jit}, policy)
        fit = lambda: model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)  # noqa: E731
        out[f"ae_train_images_per_s_{name}"] = median_rate(fit, steps * 200)
    base = out["ae_train_images_per_s_fit_float32"]
    out["ae_train_xla_vs_plain_fit"] = out["ae_train_images_per_s_fit_float32_xla"] / base
    if "ae_train_images_per_s_fit_mixed_bfloat16" in out:
        out["ae_train_bfloat16_vs_plain_fit"] = out["ae_train_images_per_s_fit_mixed_bfloat16"] / base

    encoder = autoencoder.build_encoder(54, 96, 1, config["filters"])
    decoder = autoencoder.build_decoder(54, 96, 1, config["filters"])
    latents = rng.normal(size=(2000, 128)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        autoencoder.export_encoder(encoder, f"{tmp}/encoder")
        autoencoder.export_decoder(decoder, f"{tmp}/decoder")
        out["ae_decode_images_per_s_keras_predict_b500"] = median_rate(
            lambda: decoder.predict(latents, batch_size=500, verbose=0), len(latents))
        out["ae_decode_images_per_s_decode_latents_b500"] = median_rate(
            lambda: encode.decode_latents(f"{tmp}/decoder", latents, 500), len(latents))
        out["ae_encode_images_per_s_encode_frames_b500"] = median_rate(
            lambda: encode.encode_frames(f"{tmp}/encoder", frames, 500), len(frames))
    out["ae_decode_latents_vs_predict"] = (out["ae_decode_images_per_s_decode_latents_b500"]
                                           / out["ae_decode_images_per_s_keras_predict_b500"])
    return out

# ---- end section: autoencoder ----

# ---- section: sequence (sequence engineer) ----


@benchmark("sequence")
def bench_sequence():
    """The paper's 2x600 LSTM on 128-d latents: training frames/s (batch 5, seq 50) of plain Keras
    `fit` vs. the fused XLA train step, and rollout frames/s of the stateful Keras model with
    `predict` per step vs. the exported `rollout` signature (batch 1 and 16)."""
    import tempfile

    import keras
    import numpy as np

    from tf_dance import rollout, sequence_model, sequence_training

    dim, batch, seq, batches = 128, 5, 50, 8
    cfg = sequence_training.resolve_config({})
    rng = np.random.default_rng(0)
    latents = np.cumsum(rng.normal(size=(batches * batch * seq + batch, dim)), 0).astype(np.float32)
    mean, std = sequence_model.standardizer(latents)
    model = sequence_model.build_model("lstm", dim, mean, std, batch, units=cfg["units"],
                                       num_layers=cfg["num_layers"])
    net = sequence_model.make_net(model)
    windows = sequence_training.char_rnn_batches(net.normalize(latents), batch, seq)
    out, frames = {}, batches * batch * seq

    model.compile(keras.optimizers.Adam(2e-3, clipvalue=5.0), "mse")
    x, y = windows[:, :, :-1].reshape(-1, seq, dim), windows[:, :, 1:].reshape(-1, seq, dim)
    out["train frames/s, Keras fit (stateful LSTM)"] = median_rate(
        lambda: model.fit(x, y, batch_size=batch, shuffle=False, verbose=0), frames)
    optimizer = keras.optimizers.Adam(2e-3, clipvalue=5.0)
    optimizer.build(model.trainable_variables)
    step = sequence_training.make_train_step(net, optimizer, cfg)

    def fused():
        state = net.zero_state(batch)
        for window in windows:
            loss, state = step(window, state)
        return float(loss)

    out["train frames/s, fused XLA step"] = median_rate(fused, frames)
    out["ratio fused / fit"] = out["train frames/s, fused XLA step"] / out["train frames/s, Keras fit (stateful LSTM)"]

    single = sequence_model.stateful_copy(model, 1)
    naive_steps = 30

    def naive():
        sequence_model.reset_states(single)
        frame = latents[:1, None]
        for _ in range(naive_steps):
            params = single.predict(frame, verbose=0)
            frame = net.denormalize(params)
    out["rollout frames/s, Keras predict per step (batch 1)"] = median_rate(naive, naive_steps, repeats=3)
    with tempfile.TemporaryDirectory() as tmp:
        path = rollout.export(model, tmp, "dance_lstm")
        seed = latents[:50]
        n = 4000
        out["rollout frames/s, rollout signature (batch 1)"] = median_rate(
            lambda: rollout.rollout(path, seed, n, noise=0.1), n)
        out["rollout frames/s, rollout signature (batch 16, frames x batch)"] = median_rate(
            lambda: rollout.rollout(path, np.repeat(seed[None], 16, 0), n // 4, noise=0.1), 16 * n // 4)
        start = time.perf_counter()
        rollout.rollout(path, seed, 60000, noise=0.1)
        out["rollout seconds, 60,000 frames (batch 1, once)"] = time.perf_counter() - start
    out["ratio rollout signature / predict (batch 1)"] = (out["rollout frames/s, rollout signature (batch 1)"]
                                                         / out["rollout frames/s, Keras predict per step (batch 1)"])
    return out


# ---- end section: sequence ----

# ---- section: generate (lead) ----

# ---- end section: generate ----


@cli.main
def main(argv):
    del argv
    names = FLAGS.only or list(_BENCHES)
    unknown = sorted(set(names) - set(_BENCHES))
    if unknown:
        raise cli.UserError(f"unknown benchmark(s) {unknown}; available: {sorted(_BENCHES)}")
    results = {}
    for name in names:
        print(f"== {name}", flush=True)
        results[name] = _BENCHES[name]()
        for key, value in results[name].items():
            print(f"  {key:48s} {value:12.1f}" if isinstance(value, float) else f"  {key:48s} {value}")
    if FLAGS.json:
        with cli.atomic_output(FLAGS.json) as tmp, open(tmp, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    app.run(main)
