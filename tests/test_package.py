"""The package as a whole: every module imports beside every other, none defines flags on import, the scripts
that check their inputs first start without TensorFlow, and the module map in `tf_dance/__init__.py` names them
all."""

import json
import os
import pkgutil
import re
import subprocess
import sys

import pytest

from conftest import ROOT

# Imports every module of the package, in one process, after the libraries that define absl flags
# of their own (absl.app, absl.logging, TensorFlow); records per module what failed and which flags
# its import added. Modules are found with pkgutil, so a new one is covered without a list to edit.
_IMPORT_ALL = """
import importlib, json, pkgutil, sys, traceback
import absl.app, absl.logging, keras, tensorflow
from absl import flags
import tf_dance
names = sorted("tf_dance." + m.name for m in pkgutil.iter_modules(tf_dance.__path__))
report = {"modules": names, "errors": {}, "flags": {}}
for name in names:
    before = set(flags.FLAGS)
    try:
        importlib.import_module(name)
    except BaseException as e:
        report["errors"][name] = "".join(traceback.format_exception_only(type(e), e)).strip()
    added = sorted(set(flags.FLAGS) - before)
    if added:
        report["flags"][name] = added
with open(sys.argv[1], "w") as f:
    json.dump(report, f)
"""


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("package") / "report.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", _IMPORT_ALL, str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out) as f:
        report = json.load(f)
    assert {"tf_dance.cli", "tf_dance.train_lstm", "tf_dance.autoencoder"} <= set(report["modules"])
    return report


def test_every_module_imports_beside_every_other(imported):
    """A notebook imports scripts to call their functions: two scripts' flags must never collide."""
    assert not imported["errors"], "\n".join(f"{k}: {v}" for k, v in imported["errors"].items())


def test_importing_a_module_defines_no_flags(imported):
    """Flags belong to a script's `define_flags()`, called only under `__main__`."""
    assert not imported["flags"], "\n".join(f"{k}: {', '.join(v)}" for k, v in imported["flags"].items())


# Scripts that check their flags and inputs before TensorFlow (about 3 s) is imported: a bad flag, a missing file or
# models of another training are answered at once (and the test suite, which asks them often, stays fast).
_WITHOUT_TENSORFLOW = ["bench", "demo", "encode", "evaluate", "generate", "prepare_video", "synthesize"]


def test_scripts_that_check_their_inputs_first_start_without_tensorflow():
    code = ("import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module('tf_dance.' + name)\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code, *_WITHOUT_TENSORFLOW], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", result.stdout


def _module_map():
    """Module names at the start of the lines of the package docstring's map."""
    with open(os.path.join(ROOT, "tf_dance", "__init__.py")) as f:
        text = f.read()
    doc = text.split('"""')[1]
    return re.findall(r"^\s{2,}([a-z_]+)\s{2,}\S", doc, flags=re.M)


def test_module_map_lists_every_module_once():
    listed = _module_map()
    present = sorted(m.name for m in pkgutil.iter_modules([os.path.join(ROOT, "tf_dance")]))
    assert len(present) > 10
    assert sorted(set(listed)) == sorted(listed), "listed twice: " + str(sorted({m for m in listed
                                                                                if listed.count(m) > 1}))
    assert sorted(listed) == present, (f"missing from the map: {sorted(set(present) - set(listed))}; "
                                       f"in the map but not in the package: {sorted(set(listed) - set(present))}")


def test_a_wheel_install_finds_its_flagfiles_from_any_directory(tmp_path):
    """`pip install .` (not editable) into a fresh virtual environment installs the flagfiles with the
    package: a script run outside the repository reads `--flagfile=flags/NAME.flags` from the install."""
    import shutil
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(os.path.join(ROOT, "setup.py"), source)
    for name in ("tf_dance", "flags"):
        shutil.copytree(os.path.join(ROOT, name), source / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    str(source)], check=True, env=env, cwd=tmp_path, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    script = ("import tf_dance, tf_dance.cli as c; print(tf_dance.__file__); "
              "print(c.find_flagfile('flags/quick.flags')); print(c.find_flagfile('tiny_lstm.flags'))")
    where = subprocess.run([python, "-c", script], env=env, cwd=elsewhere, capture_output=True, text=True,
                           timeout=120)
    package = str(venv / "lib")
    init, quick, tiny = where.stdout.split()
    assert init.startswith(package) and init.endswith("site-packages/tf_dance/__init__.py"), where.stdout
    assert quick == init.replace("__init__.py", "flags/quick.flags") and os.path.isfile(quick)
    assert tiny == init.replace("__init__.py", "flags/tiny_lstm.flags") and os.path.isfile(tiny)
    result = subprocess.run([python, "-m", "tf_dance.train_lstm", "--flagfile=flags/tiny_lstm.flags"], env=env,
                            cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == \
        "error: no latents file (--latents) given", result.stderr[-2000:]
