"""Shared plumbing for the absl scripts: clear errors, atomic outputs, versioned exports.

Reading exports (finding a version, loading it) is `tf_dance.savedmodels`.

Every script turns a `UserError` (or an absl `UsageError`, or a bad flag via `parse_flags`) into
one `error: ...` line on stderr and exit code 1, with no traceback and no wall of flag help, via
`@cli.main`; and it writes its outputs through `atomic_output` / `export_version`, so that a
failed or killed run never leaves a half-written file where a finished one is expected.
"""

import _thread
import contextlib
import functools
import importlib.abc
import importlib.util
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

from absl import app, flags
from absl import logging as absl_logging


class UserError(ValueError):
    """A problem with the user's input: reported as one line, never as a traceback."""


INTERRUPTED = "interrupted; nothing half-written was left"
RESUME = "interrupted; run the same command again to resume"
# Set by a parent script (the demo) for the steps it runs: it reports the interruption itself.
_QUIET_INTERRUPT = "TF_DANCE_QUIET_INTERRUPT"


def main(fn=None, *, interrupted=INTERRUPTED):
    """Wraps a script's `main(argv)`: a `UserError` or `UsageError` ends the run with one line.

    absl would print the module docstring and every flag for a `UsageError`; for a bad input
    the user needs only the reason, so it is printed as `error: <reason>` and the exit code is 1.
    Ctrl-C (SIGINT) ends it with the one line `interrupted` and exit code 130, the shell's code
    for it; outputs are atomic, so nothing half-written is left. `@cli.main(interrupted=RESUME)`
    says so for a script that resumes.
    """
    if fn is None:
        return functools.partial(main, interrupted=interrupted)

    @functools.wraps(fn)
    def wrapper(argv):
        _quiet_python_logging()
        try:
            if len(argv) > 1:
                raise UserError(f"unexpected positional arguments: {' '.join(argv[1:])}")
            return fn(argv)
        except KeyboardInterrupt:
            if not os.environ.get(_QUIET_INTERRUPT):
                print(("\n" if sys.stdout.isatty() else "") + interrupted, file=sys.stderr, flush=True)
            sys.exit(130)
        except (UserError, app.UsageError) as e:
            _fail(str(e))
        except OSError as e:
            _fail(_os_error_message(e))
        except Exception as e:  # noqa: BLE001 - only disk failures are turned into one line
            message = _io_failure_message(e)
            if message is None:
                raise
            _fail(message)
        finally:
            _ignore_interrupts_from_now()

    return wrapper


_SCRIPT = []  # set when a `python -m tf_dance.<script>` process installed `quiet_interrupts`


def _ignore_interrupts_from_now():
    """A script whose work is over (done, failed or interrupted) lets the interpreter's own clean-up
    (TensorFlow's atexit handlers) finish: a Ctrl-C that arrives then, or the one the demo passes on to a
    step that was just ending, would only add a traceback to its last line."""
    if _SCRIPT:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def quiet_interrupts():
    """Ctrl-C before a script's `main` runs (while TensorFlow imports) ends it like Ctrl-C during it: one
    line and exit code 130, not an import traceback. Installed only for `python -m tf_dance.<script>`."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if not issubclass(kind, KeyboardInterrupt):
            return previous(kind, value, traceback)
        if not os.environ.get(_QUIET_INTERRUPT):
            print(INTERRUPTED, file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)

    sys.excepthook = hook
    previous_unraisable = sys.unraisablehook

    def unraisable(info):
        """A Ctrl-C that lands in a finalizer (a `__del__`, often TensorFlow's) would be printed as "Exception
        ignored" and lost; it is handed to the main thread instead, as if it had arrived a moment later (from
        another thread: raised here, it would land in this hook)."""
        if isinstance(info.exc_value, KeyboardInterrupt):
            later = threading.Timer(0.05, _thread.interrupt_main)
            later.daemon = True
            later.start()
            return
        previous_unraisable(info)

    sys.unraisablehook = unraisable
    _SCRIPT.append(True)


def _quiet_python_logging():
    """TensorFlow's INFO lines (checkpoint sharding, assets written, renamed signature inputs) and
    warnings (AutoGraph falling back to plain Python) are for its developers: a script shows its
    own output and errors unless `--verbosity` asks for more."""
    if "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present:
        return
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


# What TensorFlow prints while it loads: C++ INFO/WARNING lines from before its logging is set up
# (oneDNN, CPU features, no CUDA driver) and the failed cuInit of a CPU-only machine.
_STARTUP_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IW]\d{4} |To enable the "
                            r"following instructions|E\d{4} .*(cuInit|Unable to register cu))")


def quiet_tensorflow():
    """Keeps TensorFlow's start-up lines off the terminal, for every script and library user.

    Its C++ INFO lines ignore TF_CPP_MIN_LOG_LEVEL (they are printed while the shared libraries
    load, before TensorFlow reads it), so the first `import tensorflow` runs with file descriptor 2
    sent to a temporary file, and every line that is not start-up noise is written back. The
    environment default hides later C++ INFO and WARNING lines (XLA compilation notes, a failed
    save's op warning before the Python error that reports it); it is set before TensorFlow is
    imported, and a value the user set wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _filtered_stderr(_STARTUP_NOISE):
            self.loader.exec_module(module)
            module.config.list_physical_devices()  # device discovery (cuInit) logs now, not at the first op


@contextlib.contextmanager
def _filtered_stderr(noise):
    """Sends file descriptor 2 to a temporary file, then writes back the lines `noise` does not
    match (all of them if the block raised)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    capture = tempfile.TemporaryFile()
    os.dup2(capture.fileno(), 2)
    failed = True
    try:
        yield
        failed = False
    except KeyboardInterrupt:
        failed = False  # Ctrl-C: its one line, without the start-up noise
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        lines = capture.read().decode(errors="replace").splitlines(keepends=True)
        capture.close()
        kept = "".join(line for line in lines if failed or not noise.search(line))
        if kept:
            sys.stderr.write(kept)
            sys.stderr.flush()


def _fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


# strerror texts of failures that only writing causes: a full, read-only or over-quota disk.
_WRITE_FAILURES = ("No space left on device", "File too large", "Read-only file system", "Disk quota exceeded")
_OS_FAILURES = _WRITE_FAILURES + ("Permission denied", "Not a directory", "Is a directory", "File exists",
                                  "No such file or directory")


def _os_error_message(e):
    """An OSError that escaped a script is a disk problem, not a bug: say which path and why."""
    reason = e.strerror or str(e)
    if e.filename is None:
        return f"cannot write: {reason}" if reason in _WRITE_FAILURES else reason
    verb = "cannot write" if reason in _WRITE_FAILURES else "cannot use"
    return f"{verb} {e.filename}: {reason}"


def first_line(error, limit=300):
    """The first non-blank line of an exception's message (TensorFlow's `message` where it has
    one), cut at `limit` characters; the exception's type name when the message is empty."""
    text = str(getattr(error, "message", None) or error)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line[:limit] or type(error).__name__


def _io_failure_message(e):
    """TensorFlow reports a failed checkpoint or SavedModel write as an `OpError` whose message
    holds the OS reason; those become one line, every other error stays a traceback."""
    if not any(c.__name__ == "OpError" for c in type(e).__mro__):
        return None
    text = getattr(e, "message", None) or str(e)
    reason = next((r for r in _OS_FAILURES if r in text), None)
    if reason is None:
        return None
    text = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:[^\]]*\]", "", first_line(e, limit=None))
    path, _, why = text.rpartition("; ")
    if reason in _WRITE_FAILURES:
        return f"cannot write {path}: {why}" if path else f"cannot write: {text}"
    return text


def check_output(path, what, is_dir=False):
    """Refuses early, before any work, an output path that cannot be created: a file where a
    directory must go (or the reverse), a directory (written into) that is not writable, or, for
    a path still to be made or a file (replaced through a sibling), a parent that is a file or not
    writable. A writable directory is accepted whatever its parent."""
    if not path:
        raise UserError(f"no {what} given")
    if os.path.exists(path):
        if is_dir and not os.path.isdir(path):
            raise UserError(f"{what} {path} is a file, not a directory")
        if not is_dir and os.path.isdir(path):
            raise UserError(f"{what} {path} is a directory, not a file")
    if is_dir and os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"cannot write {what} {path}: it is not writable")
        return path
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"cannot write {what} {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {what} {path}: {parent} is not writable")
    return path


def parse_flags(argv):
    """absl's flag parser for `app.run(main, flags_parser=cli.parse_flags)`.

    A bad flag value, unknown flag or unreadable flagfile ends the run with one `error: ...`
    line and exit code 1, like every other bad input. So does a NaN or infinite number flag:
    absl's bounds let NaN through, and no setting here means anything by it. A `--flagfile` is found
    from any working directory (`find_flagfile`), and `--help` lists every flag the script defined,
    its trainer's settings included, and no one else's.
    """
    _own_flags_in_help(flags.FLAGS)
    argv = [_resolve_flagfile_arg(a) for a in argv]
    try:
        argv = flags.FLAGS(argv)
        for name in flags.FLAGS:
            value = flags.FLAGS[name].value
            if isinstance(value, float) and not math.isfinite(value):
                raise flags.IllegalFlagValueError(f"--{name} must be a finite number, got {value}")
        return argv
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def _own_flags_in_help(flag_values):
    """absl's `--help` shows the main module's key flags; settings defined through a tf_dance library
    (`config.define_flags`, `video.define_footage_flags`) would otherwise appear only in `--helpfull`."""
    main_module = sys.argv[0]
    for module, defined in flag_values.flags_by_module_dict().items():
        if module.split(".")[0] == "tf_dance":
            for flag in defined:
                flag_values.register_key_flag_for_module(main_module, flag)


def flags_dirs():
    """Where flagfiles are installed: inside the package (a wheel), beside it (a source checkout)."""
    package = os.path.dirname(os.path.abspath(__file__))
    return [d for d in (os.path.join(package, "flags"), os.path.join(os.path.dirname(package), "flags"))
            if os.path.isdir(d)]


def find_flagfile(path):
    """`path` if it exists; else `flags/NAME.flags` or a bare `NAME.flags` looked up in the installed
    flagfiles, so `--flagfile=flags/quick.flags` works from any directory and after `pip install .`."""
    if not path or os.path.exists(path):
        return path
    parts = os.path.normpath(path).split(os.sep)
    if len(parts) == 2 and parts[0] == "flags" or len(parts) == 1:
        for directory in flags_dirs():
            candidate = os.path.join(directory, parts[-1])
            if os.path.isfile(candidate):
                return candidate
    return path


def _resolve_flagfile_arg(arg):
    for prefix in ("--flagfile=", "-flagfile="):
        if arg.startswith(prefix):
            return prefix + find_flagfile(arg[len(prefix):])
    return arg


def plural(n, word, words=None):
    """`1 clip`, `2 clips`, `1,474 frames`."""
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def duration(seconds):
    """`42 s`, `3 min 05 s`, `2 h 07 min`: how long something took or will take."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """The progress of a whole run, suited to where the output goes.

    On a terminal a live bar, redrawn in place; in a log file or a pipe a plain line (no control
    codes) every `every` seconds and at the end. Both show the elapsed time and the estimated
    time left of the whole run (`total` units; a resumed run passes the units already `done`, and
    the rate is measured on this process's own). `update(current, values)` takes
    `keras.utils.Progbar`'s arguments; `values` are (name, number) pairs, shown as their mean
    since the last line. `write(text)` prints a line of its own beside the bar.
    """

    def __init__(self, total, unit="step", done=0, what="", live=None, every=10.0, stream=None,
                 clock=time.monotonic):
        self.stream = stream or sys.stdout
        self.live = _isatty(self.stream) if live is None else live
        self.total, self.unit, self.first, self.what, self.every = total, unit, done, what, every
        self.clock = clock
        self.start = self.shown = clock()
        self.current, self.sums, self.drawn, self.finished = done, {}, False, False

    def update(self, current, values=None, finalize=None):
        self.current = current
        for name, value in values or ():
            total, count = self.sums.get(name, (0.0, 0))
            self.sums[name] = (total + float(value), count + 1)
        end = finalize if finalize is not None else (self.total is not None and current >= self.total)
        now = self.clock()
        if end or now - self.shown >= (0.2 if self.live else self.every) or not self.drawn:
            self._show(end)
            self.shown = now

    def times(self):
        """`1 min 02 s elapsed, ~8 min 10 s left`: of the whole run, at this process's rate."""
        elapsed = self.clock() - self.start
        text = f"{duration(elapsed)} elapsed"
        if self.total and self.current > self.first and self.current < self.total:
            left = elapsed * (self.total - self.current) / (self.current - self.first)
            text += f", ~{duration(left)} left"
        return text

    def write(self, text):
        if self.live and self.drawn and not self.finished:
            self.stream.write("\r\x1b[K")
        print(text, file=self.stream, flush=True)
        if self.live and self.drawn and not self.finished:
            self._show(False)

    def close(self):
        """Ends a live bar that stopped short of its total (an early stop), so later lines start afresh."""
        if self.live and self.drawn and not self.finished:
            self.stream.write("\n")
            self.stream.flush()
        self.finished = True

    def _show(self, end):
        if self.finished:
            return
        count = f"{self.current:,}/{self.total:,}" if self.total else f"{self.current:,}"
        units = self.unit + ("es" if self.unit.endswith(("ch", "s")) else "s")
        parts = [f"{self.what}{count} {units}"]
        if self.total and self.live:
            filled = int(30 * min(1.0, self.current / self.total))
            parts[0] = f"{self.what}[{'=' * filled}{'.' * (30 - filled)}] {count} {units}"
        elif self.total:
            parts[0] += f" ({100 * self.current / self.total:.0f}%)"
        parts += [f"{name} {total / count:.4g}" for name, (total, count) in self.sums.items()]
        line = "  ".join(parts) + f"  | {self.times()}"
        self.sums = {}
        if self.live:
            self.stream.write("\r\x1b[K" + line + ("\n" if end else ""))
            self.stream.flush()
        else:
            print(line, file=self.stream, flush=True)
        self.drawn = True
        self.finished = bool(end)


def progress(total, unit="step", enabled=True, **kwargs):
    """A `Progress` over `total` units (see there for `kwargs`), or `NoProgress` when not `enabled`."""
    return Progress(total, unit=unit, **kwargs) if enabled else NoProgress()


class NoProgress:
    """`Progress`'s interface, showing nothing."""

    def update(self, current, values=None, finalize=None):
        pass

    def write(self, text):
        pass

    def close(self):
        pass


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def require_file(path, what="file"):
    if not path:
        raise UserError(f"no {what} given")
    if not os.path.exists(path):
        raise UserError(f"{what} not found: {path}")
    if not os.path.isfile(path):
        raise UserError(f"{what} is not a file: {path}")
    return path


def _temp_sibling(path, is_dir):
    """`.tmp-<name>-<pid>-XXXXXXXX` beside `path` (a file keeps its extension), after removing those that
    runs now dead left for the same `path` (killed before they could clean up)."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(os.path.normpath(path))
    stem, ext = (base, "") if is_dir else os.path.splitext(base)
    _clean_stale_siblings(parent, stem, ext)
    if is_dir:
        return tempfile.mkdtemp(prefix=f".tmp-{base}-{os.getpid()}-", dir=parent)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{stem}-{os.getpid()}-", suffix=ext, dir=parent)
    os.close(fd)
    return tmp


def _clean_stale_siblings(parent, stem, ext):
    """Removes `_temp_sibling`'s temporaries for `<stem><ext>` whose writer is gone: exactly that name with a
    pid and tempfile's 8-character suffix (so another output's temporaries never match), and a dead pid; those
    of older code, without a pid, once they are a day old."""
    with_pid = re.compile(rf"\.tmp-{re.escape(stem)}-([0-9]+)-[a-z0-9_]{{8}}{re.escape(ext)}")
    without = re.compile(rf"\.tmp-{re.escape(stem)}-[a-z0-9_]{{8}}{re.escape(ext)}")
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        match = with_pid.fullmatch(name)
        path = os.path.join(parent, name)
        try:
            stale = (not _alive(int(match.group(1))) if match else
                     without.fullmatch(name) is not None and time.time() - os.lstat(path).st_mtime > STALE_SECONDS)
        except OSError:
            continue
        if stale:
            _remove(path)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


@contextlib.contextmanager
def atomic_output(path, is_dir=False, owner=None):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    The temporary name keeps the extension, so writers that choose a format by extension
    (np.save, PIL, moviepy) still work. A directory output needs an `owner` (the writer's name):
    it is marked as the owner's, and an existing directory is replaced only if empty or marked
    by the same owner, so a mistyped `--out_dir` never deletes the user's own files. A failed
    write raises `UserError("cannot write <path>: <reason>")`.
    """
    if is_dir:
        _check_replaceable(path, owner)
    try:
        tmp = _temp_sibling(path, is_dir)
    except OSError as e:
        raise UserError(f"cannot write {path}: {_reason(e)}") from None
    try:
        yield tmp
        if is_dir:
            with open(os.path.join(tmp, _MARKER), "w") as f:
                f.write(f"{owner}\n")
        _default_permissions(tmp, is_dir)
        if is_dir and os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and (e.filename is None or _inside(e.filename, tmp) or _inside(e.filename, path)):
            raise UserError(f"cannot write {path}: {_reason(e)}") from None
        raise


_UMASK_LOCK = threading.Lock()


def _reason(e):
    """numpy reports a short write (a full disk) as an OSError without errno."""
    return e.strerror or f"{e} (is the disk full?)"


MARKER = _MARKER = ".written-by-tf_dance"  # in a directory output: which writer owns it


def _inside(child, parent):
    child, parent = os.path.abspath(child), os.path.abspath(parent)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _check_replaceable(path, owner):
    if not owner:
        raise ValueError("a directory output needs an owner")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{path} is a file, not a directory")
    if _inside(os.getcwd(), path):
        raise UserError(f"{path} holds the working directory; refusing to replace it (choose another directory)")
    if not os.path.isdir(path) or not os.listdir(path):
        return
    try:
        with open(os.path.join(path, _MARKER)) as f:
            mine = f.read().strip() == owner
    except OSError:
        mine = False
    if not mine:
        raise UserError(f"{path} holds files that {owner} did not write; refusing to replace it "
                        "(choose a new or empty directory)")


def check_replaceable(path, owner, inputs=()):
    """Refuses, before any work, a directory output that `atomic_output(path, True, owner)` would
    refuse, or one that holds one of `inputs` (replacing it would delete them)."""
    _check_replaceable(path, owner)
    for given in inputs:
        if given and _inside(given, path):
            raise UserError(f"{path} holds the input {given}; replacing it would delete that input "
                            "(choose another directory)")


def _default_permissions(path, is_dir):
    """mkstemp/mkdtemp create private (0600/0700) entries; give the result the usual umask mode.

    The umask can only be read by setting it; the lock keeps two threads from interleaving that
    and leaving the process's umask at 0."""
    with _UMASK_LOCK:
        umask = os.umask(0)
        os.umask(umask)
    os.chmod(path, (0o777 if is_dir else 0o666) & ~umask)


_VERSION = re.compile(r"[0-9]+")  # ASCII digits only (fullmatch): what TF Serving reads as a version
STALE_SECONDS = 24 * 3600  # a temporary entry without a readable pid is abandoned after a day


def _alive(pid):
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def clean_stale(parent, prefix):
    """Removes `<prefix><pid>-*` entries in `parent` whose writer process is gone (a killed run's
    leftovers); entries of a live process are never touched. Entries without a pid (older code)
    go once they are a day old."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        path = os.path.join(parent, name)
        try:
            stale = (not _alive(int(pid)) if _VERSION.fullmatch(pid) else
                     time.time() - os.lstat(path).st_mtime > STALE_SECONDS)
        except OSError:
            continue
        if stale:
            _remove(path)


def temp_dir(parent, prefix):
    """A fresh `<prefix><pid>-XXXX` directory in `parent`, after removing those of dead processes."""
    os.makedirs(parent, exist_ok=True)
    clean_stale(parent, prefix)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)


def export_version(export_dir, name, write):
    """Calls `write(tmp_dir)`, then renames tmp_dir to `export_dir/name/<next integer version>`.

    Returns the final directory. The next version is one past every integer-named entry,
    complete or not, so an abandoned directory is never overwritten. The number is claimed with
    `mkdir`, which only one of several concurrent exporters can win, before the rename onto it:
    renaming straight onto the number would replace a rival's export that is still empty.
    """
    root = os.path.join(export_dir, name)
    check_output(root, "export directory", is_dir=True)
    try:
        tmp = temp_dir(root, ".tmp-export-")
    except OSError as e:
        raise UserError(f"cannot write {root}: {_reason(e)}") from None
    try:
        try:
            write(tmp)
        except OSError as e:
            raise UserError(f"cannot write {root}: {_reason(e)}") from None
        _default_permissions(tmp, True)
        while True:
            taken = [int(n) for n in os.listdir(root) if _VERSION.fullmatch(n)]
            final = os.path.join(root, str(max(taken, default=0) + 1))
            try:
                os.mkdir(final)
            except FileExistsError:
                continue
            os.rename(tmp, final)
            return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
