"""The documents stay true: tests they cite exist, commands parse, links resolve, snippets run, README stays short."""

import ast
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

README = os.path.join(ROOT, "README.md")
DOCS = [README, os.path.join(ROOT, "BENCHMARKS.md"), os.path.join(ROOT, "saved_models", "README.md"),
        *sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))]
USER_DOCS = [README, *(p for p in DOCS if os.sep + "docs" + os.sep in p)]  # README and docs/
README_LIMIT = 15_000  # bytes


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _rel(path):
    return os.path.relpath(path, ROOT)


def _fences(text):
    """(info string, body, the line before the fence) of every fenced code block."""
    return [(m.group(2), m.group(3), m.group(1)) for m in
            re.finditer(r"(^[^\n]*\n)?^```(\w*)\n(.*?)^```", text, re.M | re.S)]


# ---------------------------------------------------------------------------------------------
# tests/x.py::test_y references

TEST_REF = re.compile(r"(test_\w+\.py)::(test_\w+)")


def _test_names(path):
    tree = ast.parse(_read(path))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_cited_test_exists():
    cited = {(f, name, _rel(doc)) for doc in USER_DOCS for f, name in TEST_REF.findall(_read(doc))}
    assert len(cited) > 30, "the guarantees and faithfulness pages cite their tests"
    missing = []
    for f, name, doc in sorted(cited):
        path = os.path.join(ROOT, "tests", f)
        if not os.path.isfile(path) or name not in _test_names(path):
            missing.append(f"{doc}: {f}::{name}")
    assert not missing, "cited tests that do not exist:\n" + "\n".join(missing)


# ---------------------------------------------------------------------------------------------
# python -m tf_dance.<script> commands

COMMAND = re.compile(r"python -m tf_dance\.(\w+)(.*)")


def _commands(text):
    """(script, args) of every `python -m tf_dance.<script> ...` in code blocks (continuation lines joined)
    and in inline code."""
    lines = []
    for lang, body, _ in _fences(text):
        if lang in ("", "bash", "sh", "console"):
            lines += body.replace("\\\n", " ").splitlines()
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    lines += re.findall(r"`(python -m tf_dance\.[^`]+)`", prose)
    out = []
    for line in lines:
        for m in COMMAND.finditer(line):
            rest = re.split(r"\s(?:&&|\|\|?|;)\s", m.group(2))[0]
            out.append((m.group(1), shlex.split(rest, comments=True)))
    return out


# Runs in one child process: each script's flags are defined exactly as its `__main__` block defines them
# (everything there but `app.run`), every command line is parsed by absl, then the flags are removed for the
# next script. One TensorFlow import for all commands.
_PARSER = r"""
import ast, importlib, json, sys
from absl import flags
FLAGS = flags.FLAGS
errors = []
for script, commands in json.load(open(sys.argv[1])).items():
    module = importlib.import_module("tf_dance." + script)
    with open(module.__file__) as f:
        tree = ast.parse(f.read())
    main = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    if not main:
        errors.append(f"{script}: no __main__ block")
        continue
    body = [s for s in main[0].body if "app.run" not in ast.unparse(s)]
    before = set(FLAGS)
    exec(compile(ast.Module(body=body, type_ignores=[]), module.__file__, "exec"), vars(module))
    for args in commands:
        argv = ["python -m tf_dance." + script, *args]
        if hasattr(module, "with_default_flagfile"):
            argv = module.with_default_flagfile(argv)
        FLAGS.unparse_flags()
        try:
            FLAGS(argv)
        except flags.Error as e:
            errors.append(f"{script} {' '.join(args)}: {e}")
    FLAGS.unparse_flags()
    for name in set(FLAGS) - before:
        delattr(FLAGS, name)
print(json.dumps(errors))
"""
MISSPELT = ("generate", ["--model_dir=runs/demo/saved_models", "--frame=600"])  # must be refused


def _documented_commands():
    commands = {}
    for doc in DOCS:
        for script, args in _commands(_read(doc)):
            assert os.path.isfile(os.path.join(ROOT, "tf_dance", f"{script}.py")), \
                f"{_rel(doc)}: no script tf_dance.{script}"
            commands.setdefault(script, []).append(args)
    return commands


@pytest.fixture(scope="module", autouse=True)
def parser(tmp_path_factory):
    """The parsing child, started with the module's first test so that its TensorFlow import overlaps the
    others; `test_every_command_parses_against_its_scripts_flags` (last in the file) collects it."""
    commands = _documented_commands()
    commands.setdefault(MISSPELT[0], []).append(MISSPELT[1])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    jobs = tmp_path_factory.mktemp("commands") / "commands.json"
    jobs.write_text(json.dumps(commands))
    child = subprocess.Popen([sys.executable, "-c", _PARSER, str(jobs)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=ROOT, env=env, text=True)
    yield child
    if child.poll() is None:
        child.kill()
        child.wait()


def test_command_extraction_joins_continuations_and_drops_comments():
    text = ("```bash\nTF_CONFIG='{}' \\\npython -m tf_dance.encode --data=a.npz \\\n    --out=b.npy   # a comment\n"
            "pip install -e . && python -m tf_dance.demo --tiny\n```\n"
            "See `python -m tf_dance.bench --only=sequence`.\n")
    assert _commands(text) == [("encode", ["--data=a.npz", "--out=b.npy"]), ("demo", ["--tiny"]),
                               ("bench", ["--only=sequence"])]


# ---------------------------------------------------------------------------------------------
# Flagfiles, links, size, and what the documents must not contain


def test_every_flagfile_is_in_the_readme_table():
    text = _read(README)
    section = text.split("\n## Flagfiles", 1)[1].split("\n## ", 1)[0]
    first_column = "\n".join(re.findall(r"^\|([^|]*)\|", section, re.M))
    listed = set(re.findall(r"(\w+\.flags)", first_column))
    present = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "flags", "*.flags"))}
    assert present - listed == set(), f"flagfiles missing from README's table: {sorted(present - listed)}"
    assert listed - present == set(), f"README's table lists flagfiles that do not exist: {sorted(listed - present)}"


def _slug(heading):
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path):
    return {_slug(h) for h in re.findall(r"^#+ (.*)$", re.sub(r"^```.*?^```", "", _read(path), flags=re.M | re.S),
                                         re.M)}


def test_every_relative_link_and_image_resolves():
    broken, checked = [], 0
    for doc in DOCS:
        text = re.sub(r"^```.*?^```", "", _read(doc), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
            checked += 1
            if not os.path.exists(full):
                broken.append(f"{_rel(doc)}: {target}")
            elif anchor and full.endswith(".md") and anchor not in _anchors(full):
                broken.append(f"{_rel(doc)}: {target} (no such heading)")
    assert checked > 20
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_stays_short():
    assert os.path.getsize(README) <= README_LIMIT, f"README.md is {os.path.getsize(README)} bytes"


def test_no_issue_numbers_or_paths_outside_the_repository():
    files = DOCS + sorted(glob.glob(os.path.join(ROOT, "flags", "*.flags")))
    found = [f"{_rel(p)}: {m.group(0)!r}" for p in files
             for m in re.finditer(r"\b[Ii]ssues? #?\d+|\.\./shared|/tmp/|/work/", _read(p))]
    assert not found, "\n".join(found)


# ---------------------------------------------------------------------------------------------
# Runnable snippets, against tiny models laid out as the demo leaves them

RUNNABLE = "<!-- runnable -->"
DIM = 128
# smoothing and coherence widen the rollout state, so the snippets meet every part of it
RECIPE = {"temperature": 1.0, "noise": 0.5, "width": 1.0, "smoothing": 0.5, "box_dims": 0, "box_width": 1.0,
          "box_smoothing": 0.0, "coherence": 0.5, "box_in_picture": False}


def _snippets():
    found = [(f"{_rel(doc)}:{i}", body) for doc in DOCS
             for i, (lang, body, before) in enumerate(_fences(_read(doc)))
             if lang == "python" and before and before.strip() == RUNNABLE]
    return found


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory, tiny_dancer, export_tiny_models):
    """A directory holding `runs/demo/` as the demo leaves it: untrained tiny models and the data."""
    from tf_dance import data
    work = tmp_path_factory.mktemp("docs")
    demo = work / "runs" / "demo"
    export_tiny_models(str(demo / "saved_models"), DIM, RECIPE, num_layers=2)
    data.save_dataset(str(demo / "dancer.npz"), tiny_dancer["frames"], 24.0)
    np.save(demo / "latents.npy", np.random.default_rng(0).normal(size=(240, DIM)).astype(np.float32))
    return work


def test_the_readme_and_serving_snippets_are_marked_runnable():
    where = {name.split(":")[0] for name, _ in _snippets()}
    assert {"README.md", os.path.join("docs", "serving.md")} <= where, where


@pytest.mark.parametrize("name,code", _snippets(), ids=[name for name, _ in _snippets()])
def test_runnable_snippet_runs(name, code, demo_dir, monkeypatch):
    if "tf_dance" in code:  # the library's own API: run here, where tf_dance is already imported
        monkeypatch.chdir(demo_dir)
        exec(compile(code, name, "exec"), {"__name__": "__snippet__"})
        return
    # plain TensorFlow, in a process that never imports tf_dance
    check = "\nimport sys\nassert 'tf_dance' not in sys.modules\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code + check], cwd=demo_dir, capture_output=True, text=True,
                            env=dict(env, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_command_parses_against_its_scripts_flags(parser):
    commands = _documented_commands()
    assert sum(map(len, commands.values())) > 20 and {"demo", "train_lstm", "generate", "evaluate"} <= set(commands)
    stdout, stderr = parser.communicate(timeout=300)
    assert parser.returncode == 0, stderr[-3000:]
    errors = json.loads(stdout.strip().splitlines()[-1])
    canary = [e for e in errors if e.startswith(f"{MISSPELT[0]} {' '.join(MISSPELT[1])}:")]
    assert len(canary) == 1 and "frame" in canary[0], f"a misspelt flag was not refused: {errors}"
    errors.remove(canary[0])
    assert not errors, "commands that do not parse:\n" + "\n".join(errors)
