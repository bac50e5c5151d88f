"""Shared plumbing for the absl scripts: clear errors, atomic outputs, versioned exports.

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
import threading

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


_UMASK_LOCK = threading.Lock()


def _default_permissions(path, is_dir):
    """mkstemp/mkdtemp create private (0600/0700) entries; give the result the usual umask mode.

    The umask can only be read by setting it; the lock keeps two threads from interleaving that
    and leaving the process's umask at 0."""
    with _UMASK_LOCK:
        umask = os.umask(0)
        os.umask(umask)
    os.chmod(path, (0o777 if is_dir else 0o666) & ~umask)


_VERSION = re.compile(r"^\d+$")


def versions(model_root):
    """Integer versions under `model_root` that are complete SavedModels, ascending."""
    if not os.path.isdir(model_root):
        return []
    found = []
    for name in os.listdir(model_root):
        full = os.path.join(model_root, name)
        if _VERSION.match(name) and os.path.isfile(os.path.join(full, "saved_model.pb")):
            found.append(int(name))
    return sorted(found)


def resolve_model_dir(path, what="model"):
    """`saved_models/<name>` → its latest complete version; `saved_models/<name>/<v>` → itself."""
    if not path:
        raise UserError(f"no {what} directory given")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if _VERSION.match(os.path.basename(os.path.normpath(path))) and os.path.isdir(path):
        raise UserError(f"{what} at {path} is incomplete (no saved_model.pb)")
    found = versions(path)
    if not found:
        raise UserError(f"no complete {what} version found under {path}")
    return os.path.join(path, str(found[-1]))


def export_version(export_dir, name, write):
    """Calls `write(tmp_dir)`, then renames tmp_dir to `export_dir/name/<next integer version>`.

    Returns the final directory. The next version is one past every integer-named entry,
    complete or not, so an abandoned directory is never overwritten. The number is claimed with
    `mkdir`, which only one of several concurrent exporters can win, before the rename onto it:
    renaming straight onto the number would replace a rival's export that is still empty.
    """
    root = os.path.join(export_dir, name)
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-export-", dir=root)
    try:
        write(tmp)
        _default_permissions(tmp, True)
        while True:
            taken = [int(n) for n in os.listdir(root) if _VERSION.match(n)]
            final = os.path.join(root, str(max(taken, default=0) + 1))
            try:
                os.mkdir(final)
            except FileExistsError:
                continue
            os.rename(tmp, final)
            return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
