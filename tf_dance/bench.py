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

# ---- end section: ingest ----

# ---- section: autoencoder (autoencoder engineer) ----

# ---- end section: autoencoder ----

# ---- section: sequence (sequence engineer) ----

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
