"""Shared plumbing for the absl scripts: clear errors, atomic outputs, versioned exports.

Reading exports (finding a version, loading it) is `tf_dance.savedmodels`.

Every script turns a `UserError` (or an absl `UsageError`, or a bad flag via `parse_flags`) into
one `error: ...` line on stderr and exit code 1, with no traceback and no wall of flag help, via
`@cli.main`; and it writes its outputs through `atomic_output` / `export_version`, so that a
failed or killed run never leaves a half-written file where a finished one is expected.
"""

import contextlib
import functools
import os
import re
import shutil
import sys
import tempfile
import time

from absl import app, flags


class UserError(ValueError):
    """A problem with the user's input: reported as one line, never as a traceback."""


def main(fn):
    """Wraps a script's `main(argv)`: a `UserError` or `UsageError` ends the run with one line.

    absl would print the module docstring and every flag for a `UsageError`; for a bad input
    the user needs only the reason, so it is printed as `error: <reason>` and the exit code is 1.
    """

    @functools.wraps(fn)
    def wrapper(argv):
        try:
            if len(argv) > 1:
                raise UserError(f"unexpected positional arguments: {' '.join(argv[1:])}")
            return fn(argv)
        except (UserError, app.UsageError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    return wrapper


def parse_flags(argv):
    """absl's flag parser for `app.run(main, flags_parser=cli.parse_flags)`.

    A bad flag value, unknown flag or unreadable flagfile ends the run with one `error: ...`
    line and exit code 1, like every other bad input.
    """
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def require_file(path, what="file"):
    if not path:
        raise UserError(f"no {what} given")
    if not os.path.exists(path):
        raise UserError(f"{what} not found: {path}")
    if not os.path.isfile(path):
        raise UserError(f"{what} is not a file: {path}")
    return path


def _temp_sibling(path, is_dir):
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    if is_dir:
        return tempfile.mkdtemp(prefix=f".tmp-{base}-", dir=parent)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{stem}-", suffix=ext, dir=parent)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_output(path, is_dir=False):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    The temporary name keeps the extension, so writers that choose a format by extension
    (np.save, PIL, moviepy) still work.
    """
    tmp = _temp_sibling(path, is_dir)
    try:
        yield tmp
        _default_permissions(tmp, is_dir)
        if is_dir and os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


def _default_permissions(path, is_dir):
    """mkstemp/mkdtemp create private (0600/0700) entries; give the result the usual umask mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if is_dir else 0o666) & ~umask)


_VERSION = re.compile(r"^\d+$")
STALE_SECONDS = 24 * 3600  # a temporary entry without a readable pid is abandoned after a day


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
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
            stale = not _alive(int(pid)) if pid.isdigit() else time.time() - os.lstat(path).st_mtime > STALE_SECONDS
        except OSError:
            continue
        if stale:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)


def temp_dir(parent, prefix):
    """A fresh `<prefix><pid>-XXXX` directory in `parent`, after removing those of dead processes."""
    os.makedirs(parent, exist_ok=True)
    clean_stale(parent, prefix)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)


def export_version(export_dir, name, write):
    """Calls `write(tmp_dir)`, then renames tmp_dir to `export_dir/name/<next integer version>`.

    Returns the final directory. The next version is one past every integer-named entry,
    complete or not, so an abandoned directory is never overwritten.
    """
    root = os.path.join(export_dir, name)
    tmp = temp_dir(root, ".tmp-export-")
    try:
        write(tmp)
        _default_permissions(tmp, True)
        while True:
            taken = [int(n) for n in os.listdir(root) if _VERSION.match(n)]
            final = os.path.join(root, str(max(taken, default=0) + 1))
            try:
                os.rename(tmp, final)
                return final
            except OSError:
                if not os.path.exists(final):
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
