"""The whole paper in one command, on the embedded synthetic dancer.

    python -m tf_dance.demo [--workdir=runs/demo] [--force] [--tiny]

Synthesizes the dancer, trains the autoencoder and the LSTM with flags/quick_*.flags, exports
SavedModels, generates a 600-frame dance and evaluates it. Each step runs as its own script
(exactly what a user would type), so a step's output streams live; a finished step is
recorded in `<workdir>/steps.json` and reused on a rerun unless `--force` is given.
"""

import json
import os
import shlex
import subprocess
import sys
import time

from absl import app, flags

from tf_dance import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "Directory for the demo's data, training runs and outputs.")
flags.DEFINE_string("export_dir", None, "Where SavedModels are exported (default: <workdir>/saved_models).")
flags.DEFINE_bool("force", False, "Redo every step, even those a previous run finished.")
flags.DEFINE_bool("tiny", False, "Seconds-long smoke run with tiny models (for tests); the dance will not be good.")
flags.DEFINE_integer("seed", 0, "Seed for every step.", lower_bound=0)
flags.DEFINE_integer("frames", 600, "Frames of dance to generate.", lower_bound=1)
flags.DEFINE_string("flags_dir", None, "Directory holding the flagfiles (default: the repository's flags/).")


def _flags_dir():
    if FLAGS.flags_dir:
        path = FLAGS.flags_dir
    else:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags")
    if not os.path.isdir(path):
        raise cli.UserError(f"flagfile directory not found: {path} (install with `pip install -e .` "
                            "from the repository, or pass --flags_dir)")
    return path


class _Steps:
    """Remembers finished steps and their outputs in `<workdir>/steps.json`."""

    def __init__(self, workdir, force):
        self.path = os.path.join(workdir, "steps.json")
        self.done = {}
        if not force and os.path.exists(self.path):
            with open(self.path) as f:
                self.done = json.load(f)

    def finished(self, name):
        record = self.done.get(name)
        return record if record and all(os.path.exists(p) for p in record.values()) else None

    def record(self, name, outputs):
        self.done[name] = outputs
        with cli.atomic_output(self.path) as tmp, open(tmp, "w") as f:
            json.dump(self.done, f, indent=2)


def _run(script, *args):
    cmd = [sys.executable, "-m", f"tf_dance.{script}", *args]
    print("$ " + " ".join(shlex.quote(c) for c in cmd[1:]), flush=True)
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise cli.UserError(f"step `{script}` failed with exit code {result.returncode} (see its message above)")


def _export(export_dir, name, script, *args):
    """Runs a training script and returns the version directory it exported."""
    root = os.path.join(export_dir, name)
    before = set(cli.versions(root))
    _run(script, *args)
    new = sorted(set(cli.versions(root)) - before)
    if not new:
        raise cli.UserError(f"`{script}` finished but exported no new {name} version under {root}")
    return os.path.join(root, str(new[-1]))


@cli.main
def main(argv):
    del argv
    fdir = _flags_dir()
    size = "tiny" if FLAGS.tiny else "quick"
    work = os.path.abspath(FLAGS.workdir)
    export_dir = os.path.abspath(FLAGS.export_dir or os.path.join(work, "saved_models"))
    os.makedirs(work, exist_ok=True)
    steps = _Steps(work, FLAGS.force)
    seed = f"--seed={FLAGS.seed}"
    n_data = 300 if FLAGS.tiny else 4000
    n_gen = min(FLAGS.frames, 60) if FLAGS.tiny else FLAGS.frames
    plan = [
        ("synthesize", "Synthesizing the default dancer",
         lambda: {"data": _made(f"{work}/dancer.npz", "synthesize", "--kind=dancer", f"--frames={n_data}", seed,
                                f"--out={work}/dancer.npz")}),
        ("autoencoder", "Training the autoencoder (paper section 3.1)",
         lambda: {"encoder": _export(export_dir, "encoder", "train_autoencoder",
                                     f"--flagfile={fdir}/{size}_autoencoder.flags", seed,
                                     f"--data={work}/dancer.npz", f"--workdir={work}/ae",
                                     f"--export_dir={export_dir}"),
                  "decoder": os.path.join(export_dir, "decoder", str(cli.versions(f"{export_dir}/decoder")[-1]))}),
        ("encode", "Encoding every frame to a 128-d vector",
         lambda: {"latents": _made(f"{work}/latents.npy", "encode", f"--data={work}/dancer.npz",
                                   f"--encoder={steps.done['autoencoder']['encoder']}",
                                   f"--out={work}/latents.npy")}),
        ("lstm", "Training the stateful LSTM (paper sections 3.3-3.4)",
         lambda: {"lstm": _export(export_dir, "dance_lstm", "train_lstm", f"--flagfile={fdir}/{size}_lstm.flags",
                                  seed, f"--latents={work}/latents.npy", f"--workdir={work}/lstm",
                                  f"--export_dir={export_dir}")}),
        ("generate", f"Generating {n_gen} frames of dance (paper section 3.5)",
         lambda: {"video": _made(f"{work}/dance.mp4", "generate", f"--lstm={steps.done['lstm']['lstm']}",
                                 f"--encoder={steps.done['autoencoder']['encoder']}",
                                 f"--decoder={steps.done['autoencoder']['decoder']}",
                                 f"--latents={work}/latents.npy", f"--data={work}/dancer.npz",
                                 f"--frames={n_gen}", seed, f"--out={work}/dance.mp4")}),
        ("evaluate", "Measuring the dance: freezing, motion, coverage, novelty",
         lambda: {"report": _made(f"{work}/eval", "evaluate", f"--generated={work}/dance_latents.npy",
                                  f"--latents={work}/latents.npy", f"--data={work}/dancer.npz",
                                  f"--decoder={steps.done['autoencoder']['decoder']}",
                                  f"--out_dir={work}/eval")}),
    ]
    start = time.time()
    for i, (name, title, run) in enumerate(plan, 1):
        print(f"\n[{i}/{len(plan)}] {title}", flush=True)
        if steps.finished(name):
            print(f"  done in an earlier run, reused ({', '.join(steps.done[name].values())}); --force redoes it")
            continue
        steps.record(name, run())
    print(f"\nDemo finished in {time.time() - start:.0f} s.")
    print(f"  dance video:  {work}/dance.mp4  (also dance.gif, dance_sheet.png)")
    print(f"  evaluation:   {work}/eval/report.md")
    print(f"  SavedModels:  {export_dir}")
    return 0


def _made(path, script, *args):
    _run(script, *args)
    if not os.path.exists(path):
        raise cli.UserError(f"`{script}` finished but did not write {path}")
    return path


if __name__ == "__main__":
    app.run(main)
