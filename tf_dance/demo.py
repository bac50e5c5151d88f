"""The whole paper in one command, on the embedded synthetic dancer or on your own footage.

    python -m tf_dance.demo [--workdir=runs/demo] [--force] [--tiny]
    python -m tf_dance.demo --video=clip1.mp4 [--video=clip2.mp4 ...] [--workdir=runs/footage]

Runs, each as its own script with its own flagfile (exactly what a user would type, so every
step's progress streams live): synthesize the dancer -> train_autoencoder -> encode ->
train_lstm -> generate a 600-frame dance -> evaluate it, then prints where the video is.

The demo's settings (how many frames of dancer, which flagfile each training script gets, how
many frames to generate) are flags, read from flags/quick.flags unless another `--flagfile` is
given; `--tiny` swaps in settings of about a minute for tests. A finished step is recorded in
`<workdir>/steps.json` together with a key of its command line, its flagfile's contents and the
steps before it: a rerun reuses it while that key still matches, redoes it (and everything
after it) when it changed, and `--force` redoes every step from scratch.

With `--video`, the first step is `prepare_video` on your clips (one dataset, one clip per video)
instead of the dancer, the defaults come from flags/footage.flags, and the LSTM flagfile's batch
size is fitted to the footage's size (`sequence_training.lstm_sizing`; the demo prints what it picked and why).
`prepare_video`'s footage options (`--invert`, `--threshold`, `--crop`, `--fit`, `--fps`, `--start`,
`--end`, `--max_frames`, ...) are passed on to it, and a contact sheet of the prepared frames
(`footage_preview.png`) shows what the models will learn from.

With `--music` the dancer dances to procedural songs (its soundtrack; with `--video`, your clips'
own), the LSTM is trained with `--music`, and the demo ends with a dance to a procedural song no
training heard (another seed, other tempi: `song.mp4`), written with that song, and its beat
alignment measured against the data's.
"""

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

from absl import app, flags

from tf_dance import cli, musicality, savedmodels, video
from tf_dance.data import dataset_fps

FLAGS_DIR = (cli.flags_dirs() or [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                 "flags")])[0]
DEFAULT_FLAGFILE = os.path.join(FLAGS_DIR, "quick.flags")
FOOTAGE_FLAGFILE = os.path.join(FLAGS_DIR, "footage.flags")
# --tiny's defaults instead of quick.flags: every step small (tests, CI); the dance is meaningless.
TINY = dict(dancer_frames=300, autoencoder_flags="tiny_autoencoder.flags", lstm_flags="tiny_lstm.flags",
            frames=60)

FLAGS = flags.FLAGS


def define_flags():
    """The script's flags, defined only when it runs (importing the module defines none)."""
    flags.DEFINE_string("workdir", "runs/demo", "Directory for the demo's data, training runs and outputs.")
    flags.DEFINE_string("export_dir", None, "Where SavedModels are exported (default: <workdir>/saved_models).")
    flags.DEFINE_bool("force", False, "Redo every step from scratch, even those a previous run finished.")
    flags.DEFINE_bool("tiny", False, f"A smoke run of about a minute for tests: the defaults are {TINY} instead of "
                      "flags/quick.flags (flags given still override them); the dance will not be good.")
    flags.DEFINE_integer("seed", 0, "Seed passed to every step.", lower_bound=0)
    flags.DEFINE_integer("dancer_frames", None, "Frames of the synthetic dancer to train on (24 fps).", lower_bound=100,
                         upper_bound=10_000_000)
    flags.DEFINE_multi_string("video", None, "Your own footage instead of the dancer: a video file (anything ffmpeg "
                              "reads); repeat for several clips. Defaults then come from flags/footage.flags.")
    flags.DEFINE_string("autoencoder_flags", None, "Flagfile for `tf_dance.train_autoencoder` (a name in "
                        "--flags_dir, or a path).")
    flags.DEFINE_string("lstm_flags", None, "Flagfile for `tf_dance.train_lstm` (a name in --flags_dir, or a path).")
    flags.DEFINE_integer("frames", None, "Frames of dance to generate (the paper: 600).", lower_bound=1,
                         upper_bound=10_000_000)
    flags.DEFINE_float("noise", None, "`generate --noise`: noise on each fed-back frame (beyond the paper). "
                       "Default: the LSTM's recorded recipe (its flagfile's --rollout_noise).", lower_bound=0.0)
    flags.DEFINE_float("temperature", None, "`generate --temperature` for a mixture-head model (beyond the paper). "
                       "Default: the LSTM's recorded recipe.", lower_bound=0.0)
    for name in ("noise", "temperature"):  # the bounds let NaN through; inf would fail only at step 5
        flags.register_validator(name, lambda v: v is None or math.isfinite(v), f"--{name} must be a finite number")
    flags.DEFINE_bool("music", False, "Dance to music (beyond the paper): the dancer gets a procedural soundtrack, the "
                      "LSTM hears it (train_lstm --music), and the demo ends with a dance to a song no training heard.")
    flags.DEFINE_string("music_flags", None, "With --music: a flagfile given to `tf_dance.train_lstm` after "
                        "--lstm_flags, the recipe for dancing to music (a name in --flags_dir, or a path; "
                        "flags/quick.flags names music_lstm.flags). Default: none, --lstm_flags alone.")
    flags.DEFINE_string("flags_dir", FLAGS_DIR, "Where flagfile names without a directory are looked up.")
    video.define_footage_flags(FLAGS)  # passed on to `prepare_video` with --video


def with_default_flagfile(argv):
    """argv with the default settings first, so that every flag given overrides them: flags/quick.flags,
    or TINY with --tiny. Nothing is added when a --flagfile is given."""
    if any(a == "--flagfile" or a.startswith("--flagfile=") for a in argv[1:]):
        return argv
    footage = any(a == "--video" or a.startswith("--video=") for a in argv[1:])
    flagfile = FOOTAGE_FLAGFILE if footage else DEFAULT_FLAGFILE
    if "--tiny" in argv[1:] or "--tiny=true" in argv[1:]:
        defaults = [f"--{k}={v}" for k, v in TINY.items() if not (footage and k == "dancer_frames")]
    elif os.path.isfile(flagfile):
        defaults = [f"--flagfile={flagfile}"]
    else:
        defaults = []
    return [argv[0], *defaults, *argv[1:]]


def settings():
    """The demo's settings, checked: flagfiles resolved to paths."""
    s = dict(dancer_frames=FLAGS.dancer_frames, autoencoder_flags=FLAGS.autoencoder_flags,
             lstm_flags=FLAGS.lstm_flags, frames=FLAGS.frames)
    s["music"] = bool(FLAGS.music)
    s["song_seed"] = FLAGS.seed + musicality.HELD_OUT_SEED
    videos = FLAGS.video or []
    if videos:
        del s["dancer_frames"]
    missing = [f"--{k}" for k, v in s.items() if v is None]
    if missing:
        default = "footage.flags" if videos else "quick.flags"
        raise cli.UserError(f"{', '.join(missing)} not set: pass --flagfile=flags/{default} (the default "
                            "without --flagfile) or set them")
    for path in videos:
        if not os.path.isfile(path):
            raise cli.UserError(f"--video: {path} is not a file")
    s["videos"] = [os.path.abspath(p) for p in videos]
    s["footage"] = [FLAGS[k].serialize() for k in video.FOOTAGE_FLAGS if FLAGS[k].present]
    if s["footage"] and not videos:
        raise cli.UserError(f"{', '.join(s['footage'])}: footage options apply to --video only")
    for key in ("autoencoder_flags", "lstm_flags"):
        s[key] = find_flagfile(s[key], key)
    s["music_flags"] = find_flagfile(FLAGS.music_flags, "music_flags") if FLAGS.music and FLAGS.music_flags else None
    return s


def _sizing(data_path, lstm_flags):
    """`sequence_training.lstm_sizing` of the dataset as it is now (a remade one is sized again)."""
    from tf_dance import sequence_training  # TensorFlow: not imported before the demo's settings are checked
    return sequence_training.lstm_sizing(data_path, lstm_flags, os.path.getmtime(data_path))


def find_flagfile(name, what):
    for path in (name, os.path.join(FLAGS.flags_dir, name)):
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise cli.UserError(f"--{what}: flagfile {name} not found (nor in {FLAGS.flags_dir})")


class Steps:
    """Finished steps in `<workdir>/steps.json`: step name -> {key, outputs}."""

    def __init__(self, workdir, force):
        self.path = os.path.join(workdir, "steps.json")
        self.done = {}
        if not force and os.path.exists(self.path):
            try:
                with open(self.path) as f:
                    self.done = json.load(f)
            except (OSError, ValueError):
                self.done = {}  # unreadable: redo everything

    def reusable(self, name, key):
        record = self.done.get(name)
        if not isinstance(record, dict) or record.get("key") != key:
            return None
        outputs = record.get("outputs", {})
        return outputs if outputs and all(os.path.exists(p) for p in outputs.values()) else None

    def record(self, name, key, outputs):
        self.done[name] = {"key": key, "outputs": outputs}
        with cli.atomic_output(self.path) as tmp, open(tmp, "w") as f:
            json.dump(self.done, f, indent=2)


def step_key(previous, args, flagfile=None):
    h = hashlib.sha256(previous.encode())
    h.update(json.dumps(args).encode())
    if flagfile:
        with open(flagfile, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def run(script, args, keep_fds=()):
    """Runs a step. Ctrl-C on a terminal reaches the step too; a SIGINT sent to the demo alone is
    passed on. Either way the step stops cleanly (atomic outputs, checkpoints) before the demo ends.
    keep_fds: descriptors the step inherits (the workdir's lock)."""
    cmd = [sys.executable, "-m", f"tf_dance.{script}", *args]
    print("$ python " + " ".join(shlex.quote(c) for c in cmd[1:]), flush=True)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
               PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
               **{cli._QUIET_INTERRUPT: "1"})
    process = subprocess.Popen(cmd, env=env, pass_fds=keep_fds)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        _stop(process)
        raise
    if code in (130, -signal.SIGINT):
        raise KeyboardInterrupt
    if code != 0:
        raise cli.UserError(f"step `{script}` failed with exit code {code} (see its message above)")


def _stop(process):
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


OWNER = "demo"  # the marker (cli's) in every step folder the demo made: only those are ever cleared


def _owned(path):
    """Whether the step folder `path` is the demo's: marked by it, or stamped by an older demo (`<path>.key`)."""
    try:
        with open(os.path.join(path, cli.MARKER)) as f:
            return f.read().strip() == OWNER
    except OSError:
        return os.path.isfile(path + ".key")


def check_step_folders(paths):
    """Refuses, before any step, a step folder that exists with files the demo did not write: a rerun may
    clear its step folders, and never deletes what a user put there."""
    for path in paths:
        if os.path.lexists(path) and not os.path.isdir(path):
            raise cli.UserError(f"{path} is a file, but the demo keeps a training run there; move it or use another "
                                "--workdir")
        if os.path.isdir(path) and os.listdir(path) and not _owned(path):
            raise cli.UserError(f"{path} holds files the demo did not write; the demo keeps a training run there "
                                "and may clear it, so move them or use another --workdir")


def fresh_workdir(path, key, force):
    """A training step resumes an interrupted run of the same key; any other run of the demo's is cleared
    (the training scripts refuse to resume a run with different settings). The folder is marked as the
    demo's; one it did not write is refused (`check_step_folders`), never cleared."""
    check_step_folders([path])
    stamp = path + ".key"
    old = None
    if os.path.exists(stamp):
        with open(stamp) as f:
            old = f.read().strip()
    if force or old != key:
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, cli.MARKER), "w") as f:
        f.write(f"{OWNER}\n")
    with open(stamp, "w") as f:
        f.write(key)


LOCK = ".demo.lock"


@contextlib.contextmanager
def workdir_lock(work):
    """Holds `<work>/.demo.lock` (an flock) while the demo runs, so a second demo on the same workdir stops
    with one line instead of training over the first one's models. The kernel drops the lock when the
    holder dies (a killed demo never blocks the next), and the steps inherit it, so a step left running by
    a killed demo still holds it."""
    path = os.path.join(work, LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise cli.UserError(f"another demo (pid {holder}) or a step it started is still running in {work}; "
                                "wait for it to finish or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)


def new_version(root, before, script):
    new = [p for p in savedmodels.version_dirs(root) if p not in before]
    if not new:
        raise cli.UserError(f"`{script}` finished but exported no new version under {root}")
    return new[-1]


def plan(work, export_dir, s, seed):
    """The steps in order: (name, title, script, args(outputs), flagfile, workdir, outputs(outputs))."""
    footage = bool(s.get("videos"))
    data = f"{work}/{'footage' if footage else 'dancer'}.npz"
    latents, video = f"{work}/latents.npy", f"{work}/dance.mp4"
    preview = f"{work}/footage_preview.png"
    source = ("prepare", f"Preparing your {cli.plural(len(s['videos']), 'video')} as one dataset, a clip per video",
              "prepare_video", lambda o: [*(f"--video={v}" for v in s["videos"]), *s["footage"], f"--out={data}",
                                          f"--preview={preview}"],
              None, None, lambda o: {"data": data, "preview": preview}) if footage else (
        "synthesize", f"Synthesizing {s['dancer_frames']} frames of the default dancer", "synthesize",
        lambda o: ["--kind=dancer", f"--frames={s['dancer_frames']}", seed, f"--out={data}",
                   f"--video={work}/dancer.mp4"],
        None, None, lambda o: {"data": data, "training_video": f"{work}/dancer.mp4"})
    song = f"{work}/song.mp4"
    music = ["--music", *([f"--flagfile={s['music_flags']}"] if s.get("music_flags") else [])] if s.get("music") else []
    if music and not footage:
        source = (source[0], source[1] + " with its procedural soundtrack", source[2],
                  lambda o: ["--kind=dancer", f"--frames={s['dancer_frames']}", seed, f"--out={data}",
                             f"--video={work}/dancer.mp4", "--music"], *source[4:])
    sized = (lambda o: _sizing(o["data"], s["lstm_flags"])[0]) if footage else (lambda o: [])
    steps = [
        source,
        ("autoencoder", "Training the autoencoder: 96x54 frames <-> 128-d vectors (paper 3.1)",
         "train_autoencoder",
         lambda o: [f"--flagfile={s['autoencoder_flags']}", seed, f"--data={data}", f"--workdir={work}/ae",
                    f"--export_dir={export_dir}"],
         s["autoencoder_flags"], f"{work}/ae", None),
        ("encode", "Encoding every frame to its latent vector", "encode",
         lambda o: [f"--data={data}", f"--encoder={o['encoder']}", f"--out={latents}"],
         None, None, lambda o: {"latents": latents}),
        ("lstm", "Training the stateful LSTM on the vector sequence (paper 3.3-3.4)", "train_lstm",
         lambda o: [f"--flagfile={s['lstm_flags']}", seed, f"--latents={latents}",
                    f"--workdir={work}/lstm", f"--export_dir={export_dir}", "--export_name=dance_lstm",
                    f"--calibrate_decoder={o['decoder']}", f"--calibrate_fps={dataset_fps(o['data']):g}",
                    *sized(o), *music],
         s["lstm_flags"], f"{work}/lstm", None),
        ("generate", f"Generating {s['frames']} frames of dance (paper 3.5)"
         + (" to a song no training heard" if music else ""), "generate",
         lambda o: [f"--lstm={o['lstm']}", f"--decoder={o['decoder']}", f"--data={data}", f"--latents={latents}",
                    f"--frames={s['frames']}", *_sampling_flags(), seed, "--scale=2", f"--out={video}",
                    *([f"--audio={song}"] if music else [])],
         None, None, lambda o: {"video": video, "gif": f"{work}/dance.gif", "sheet": f"{work}/dance_sheet.png",
                                "generated": f"{work}/dance_latents.npy"}),
        ("evaluate", "Measuring the dance: motion, freezing, pose coverage, novelty (paper 5.3)", "evaluate",
         lambda o: [f"--generated={o['generated']}", f"--latents={latents}", f"--data={data}",
                    f"--decoder={o['decoder']}", seed, f"--out_dir={work}/eval",
                    *([f"--audio={song}"] if music else [])],
         None, None, lambda o: {"metrics": f"{work}/eval/metrics.json", "report": f"{work}/eval/report.md"}),
    ]
    if music:  # the held-out song: the dancer of another seed, whose preview video carries its song
        steps.insert(4, ("song", "Making a song no training heard (another seed, other tempi)", "synthesize",
                         lambda o: ["--kind=dancer", f"--frames={s['frames']}",
                                    f"--seed={s['song_seed']}", "--music",
                                    f"--out={work}/song.npz", f"--video={song}"],
                         None, None, lambda o: {"song": song}))
    return steps


def _sampling_flags():
    """--noise/--temperature for `generate` only when given: otherwise it uses the model's recipe."""
    return [f"--{k}={FLAGS[k].value}" for k in ("noise", "temperature") if FLAGS[k].value is not None]


def _exports(name, export_dir):
    if name == "autoencoder":
        return {"encoder": os.path.join(export_dir, "encoder"), "decoder": os.path.join(export_dir, "decoder")}
    return {"lstm": os.path.join(export_dir, "dance_lstm")}


def verdict_lines(metrics_path):
    """A few lines from the evaluation: is the dance frozen, how much does it move, which goals it misses."""
    try:
        with open(metrics_path) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return []
    verdicts = m.get("verdicts", {})
    flagged = [k for k, v in verdicts.items() if v]
    lines = [f"  verdicts:     {'none flagged' if not flagged else 'FLAGGED ' + ', '.join(flagged)} "
             f"(checked: {', '.join(verdicts)})"]
    dancer = (m.get("dancers") or [{}])[0]
    freeze, motion = dancer.get("freeze", {}), dancer.get("motion", {})
    if freeze.get("longest_still_seconds") is not None:
        lines.append(f"  longest still stretch: {freeze['longest_still_seconds']:.1f} s of "
                     f"{dancer.get('seconds', 0):.1f} s (frozen: longer than {freeze['freeze_seconds']:.1f} s)")
    if motion.get("motion_ratio") is not None:
        lines.append(f"  motion per frame vs. the data: {motion['motion_ratio']:.2f}x")
    tune = m.get("music") or {}
    if tune.get("alignment") is not None:
        data_alignment = tune.get("data_alignment")
        lines.append(f"  beat alignment: {tune['alignment']:.2f} of the dance's kinematic beats on a music beat"
                     + ("" if data_alignment is None else f" (the data on its own music: {data_alignment:.2f})"))
    goals = m.get("goals", {})
    if goals:
        value = lambda g: next((f" {v:.2f}" for v in g.get("values", []) if v is not None), "")  # noqa: E731
        missed = [f"{k}{value(g)}" for k, g in goals.items() if g.get("passed") is False]
        unmeasured = [k for k, g in goals.items() if g.get("passed") is None]
        lines.append(f"  goals (second half): {'all measured met' if not missed else 'MISSED ' + ', '.join(missed)}"
                     + (f"; not measured: {', '.join(unmeasured)}" if unmeasured else "")
                     + f" (checked: {', '.join(goals)})")
    return lines


@cli.main(interrupted=f"{cli.RESUME} (finished steps are reused)")
def main(argv):
    del argv
    s = settings()
    work = os.path.abspath(FLAGS.workdir)
    export_dir = os.path.abspath(FLAGS.export_dir or os.path.join(work, "saved_models"))
    cli.check_output(work, "--workdir", is_dir=True)
    cli.check_output(export_dir, "--export_dir", is_dir=True)
    os.makedirs(work, exist_ok=True)
    with workdir_lock(work) as lock:
        return _run_steps(s, work, export_dir, lock)


def _run_steps(s, work, export_dir, lock):
    steps = Steps(work, FLAGS.force)
    seed = f"--seed={FLAGS.seed}"
    source = (f"your footage ({cli.plural(len(s['videos']), 'video')})" if s["videos"] else
              f"{s['dancer_frames']} dancer frames")
    print(f"tf_dance demo in {work}: {source}, autoencoder "
          f"{os.path.relpath(s['autoencoder_flags'])}, LSTM {os.path.relpath(s['lstm_flags'])}, "
          f"{s['frames']} generated frames", flush=True)
    outputs, key, start = {}, "", time.time()
    todo = plan(work, export_dir, s, seed)
    check_step_folders([workdir for *_, workdir, _ in todo if workdir])
    for i, (name, title, script, args_fn, flagfile, workdir, outputs_fn) in enumerate(todo, 1):
        args = args_fn(outputs)
        key = step_key(key, [script, *args], flagfile)
        print(f"\n[{i}/{len(todo)}] {title}", flush=True)
        if name == "lstm" and s["videos"]:
            why = _sizing(outputs["data"], s["lstm_flags"])[1]
            print(f"  sized for your footage: {why}", flush=True)
        reused = steps.reusable(name, key)
        if reused:
            outputs.update(reused)
            print(f"  reused from an earlier run ({', '.join(reused.values())}); --force redoes it", flush=True)
            continue
        t = time.time()
        if workdir:
            fresh_workdir(workdir, key, FLAGS.force)
            roots = _exports(name, export_dir)
            before = {k: set(savedmodels.version_dirs(r)) for k, r in roots.items()}
            run(script, args, (lock,))
            made = {k: new_version(r, before[k], script) for k, r in roots.items()}
        else:
            run(script, args, (lock,))
            made = outputs_fn(outputs)
            missing = [p for p in made.values() if not os.path.exists(p)]
            if missing:
                raise cli.UserError(f"`{script}` finished but did not write {', '.join(missing)}")
        outputs.update(made)
        steps.record(name, key, made)
        print(f"  done in {time.time() - t:.0f} s", flush=True)
    print(f"\nDemo finished in {time.time() - start:.0f} s.")
    print(f"  dance video:  {outputs['video']}  (also {os.path.basename(outputs['gif'])}, "
          f"{os.path.basename(outputs['sheet'])})")
    if outputs.get("preview"):
        print(f"  your footage as the models see it: {outputs['preview']}  (dataset: "
              f"{os.path.basename(outputs['data'])})")
    else:
        print(f"  training data: {outputs.get('training_video') or outputs['data']}")
    if outputs.get("song"):
        print(f"  danced to:    {outputs['song']}  (a song no training heard; the dance video plays it)")
    print(f"  evaluation:   {outputs['report']}")
    for line in verdict_lines(outputs["metrics"]):
        print(line)
    print(f"  SavedModels:  {export_dir}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, argv=with_default_flagfile(sys.argv), flags_parser=cli.parse_flags)
