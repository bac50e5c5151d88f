"""generate: every output with the right frame count and size, seeds, and clean failures."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tf_dance import cli, data, generation, savedmodels, video

from conftest import ROOT, TINY_DIM, TINY_RECIPE

DIM, RECIPE = TINY_DIM, TINY_RECIPE


@pytest.fixture(scope="session")
def saved_models(tiny_saved_models):
    """Untrained tiny encoder, decoder and LSTM exported the way the training scripts export them;
    the LSTM has a mixture head and records a rollout recipe."""
    return tiny_saved_models


def _frames_in(path, width, height):
    frames, fps = video.read_video(path, width=width, height=height, progress=False)
    return len(frames), fps


def _gif_durations(gif):
    durations = []
    for i in range(gif.n_frames):
        gif.seek(i)
        durations.append(gif.info["duration"])
    return durations


def test_one_dance_writes_every_output(saved_models, tiny_dancer, tmp_path):
    models = savedmodels.load_models(saved_models, need_encoder=True)
    latents, frames = generation.make_dance(models, tiny_dancer["frames"][5:15], frames=30)
    assert latents.shape == (30, DIM) and frames.shape == (30, 54, 96, 1) and frames.dtype == np.uint8
    out = str(tmp_path / "dance.mp4")
    result = generation.write_dance(out, (latents, frames), fps=24.0, scale=2)
    assert sorted(os.listdir(tmp_path)) == ["dance.gif", "dance.mp4", "dance_latents.npy", "dance_sheet.png"]
    assert video.probe(out)["width"] == 192 and video.probe(out)["height"] == 108
    assert _frames_in(out, 192, 108) == (30, 24.0)
    gif = Image.open(result["gif"])  # PIL merges identical frames: check the running time (1/100 s steps)
    assert gif.size == (192, 108)
    assert abs(sum(_gif_durations(gif)) - 30 * 1000 / 24) <= 30 * 10
    np.testing.assert_array_equal(np.load(result["latents"]), latents)
    assert 0 < result["finish_seconds"] <= result["write_seconds"] <= result["seconds"]
    sheet = Image.open(result["sheet"])  # every 4th of 30 frames: 8 tiles in one row of 8, under a title
    title = 24  # the title band at scale 2
    assert sheet.size == (8 * 192 + 9 * 2, title + 108 + 2 * 2)
    assert np.asarray(sheet)[:title].max() == 255 and np.asarray(sheet)[:title, -100:].max() == 0


def test_a_dance_in_pieces_is_the_dance_in_one_piece(saved_models, tiny_dancer, tmp_path):
    """The streamed path (what the script writes) gives the latents and the pictures of `make_dance`."""
    models = savedmodels.load_models(saved_models)
    seeds = np.random.default_rng(1).normal(size=(2, 6, DIM)).astype(np.float32)
    latents, frames = generation.make_dance(models, seeds, frames=150, random_seed=3)
    assert latents.shape == (2, 150, DIM) and frames.shape == (2, 150, 54, 96, 1)
    pieces = list(generation.dance_chunks(models, seeds, 150, random_seed=3))
    assert len(pieces) > 1
    np.testing.assert_array_equal(np.concatenate([p[0] for p in pieces], 1), latents)
    streamed = list(models.lstm.stream(seeds, 150, random_seed=3, chunk=64))
    assert [p.shape[1] for p in streamed] == [1, 64, 64, 21]
    np.testing.assert_array_equal(np.concatenate(streamed, 1), latents)
    out = str(tmp_path / "two.mp4")
    generation.write_dance(out, iter(pieces), 24.0, frames=150)
    np.testing.assert_array_equal(np.load(tmp_path / "two_latents.npy"), latents)


def test_served_rollout_with_the_recorded_recipe_equals_generate(run_module, saved_models, tmp_path):
    """generate without --temperature/--noise uses the export's recipe: plain TensorFlow calling the
    `rollout` signature with the settings from tf_dance.json gets the same latents."""
    import tensorflow as tf
    latents = str(tmp_path / "latents.npy")
    z = np.random.default_rng(0).normal(size=(100, DIM)).astype(np.float32)
    np.save(latents, z)
    out = tmp_path / "dance.mp4"
    result = run_module("tf_dance.generate", f"--model_dir={saved_models}", f"--latents={latents}", "--frames=70",
                        "--seed_frames=10", "--seed_index=20", "--seed=5", f"--out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    version = os.path.join(saved_models, "dance_lstm", "1")
    with open(os.path.join(version, "tf_dance.json")) as f:
        recipe = json.load(f)["rollout"]
    assert recipe == RECIPE
    rollout = tf.saved_model.load(version).signatures["rollout"]
    served = rollout(
        seed=tf.constant(z[None, 20:30]), num_frames=tf.constant(70), temperature=tf.constant(recipe["temperature"]),
        noise=tf.constant(recipe["noise"]), random_seed=tf.constant(5))["frames"].numpy()[0]
    np.testing.assert_array_equal(np.load(tmp_path / "dance_latents.npy"), served)
    default = rollout(
        seed=tf.constant(z[None, 20:30]), num_frames=tf.constant(70), temperature=tf.constant(1.0),
        noise=tf.constant(0.0), random_seed=tf.constant(5))["frames"].numpy()[0]
    assert not np.allclose(default, served)  # the recipe made a difference
    again = run_module("tf_dance.generate", f"--model_dir={saved_models}", f"--latents={latents}", "--frames=70",
                       "--seed_frames=10", "--seed_index=20", "--seed=5", "--temperature=1", "--noise=0",
                       f"--out={out}")
    assert again.returncode == 0, again.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "dance_latents.npy"), default)  # flags win


def _contents(directory):
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))
            if os.path.isfile(os.path.join(directory, name))}


def test_the_four_outputs_change_together_or_not_at_all(run_module, fails_cleanly, saved_models, tmp_path,
                                                        monkeypatch):
    models = savedmodels.load_models(saved_models)
    seed = np.zeros((4, DIM), np.float32)
    out = str(tmp_path / "dance.mp4")
    generation.write_dance(out, generation.make_dance(models, seed, frames=20), 24.0)
    old = _contents(tmp_path)
    assert len(old) == 4

    real, failed = os.replace, []
    def fail_on_the_sheet(src, dst):  # noqa: E306 (the third new file cannot be moved in, once)
        if dst == str(tmp_path / "dance_sheet.png") and not failed:
            failed.append(src)
            raise PermissionError(13, "Permission denied")
        return real(src, dst)
    monkeypatch.setattr(generation.os, "replace", fail_on_the_sheet)
    with pytest.raises(cli.UserError, match="old outputs are unchanged"):
        generation.write_dance(out, generation.make_dance(models, seed, frames=33, random_seed=1), 24.0)
    monkeypatch.undo()
    assert failed and _contents(tmp_path) == old and sorted(os.listdir(tmp_path)) == sorted(old)

    os.remove(tmp_path / "dance_sheet.png")
    os.mkdir(tmp_path / "dance_sheet.png")  # a directory where the sheet goes: refused before any work
    del old["dance_sheet.png"]
    np.save(tmp_path / "latents.npy", np.zeros((50, DIM), np.float32))
    result = run_module("tf_dance.generate", f"--model_dir={saved_models}", f"--latents={tmp_path}/latents.npy",
                        "--frames=12", "--seed_frames=4", f"--out={out}")
    fails_cleanly(result, "dance_sheet.png")
    assert {k: v for k, v in _contents(tmp_path).items() if k != "latents.npy"} == old
    assert os.path.isdir(tmp_path / "dance_sheet.png") and not os.listdir(tmp_path / "dance_sheet.png")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]


def test_stale_temporary_outputs_are_removed_but_not_one_in_use(saved_models, tmp_path):
    import subprocess
    import sys
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    os.makedirs(tmp_path / f".tmp-generate-{dead}-abc" / "sub")
    os.makedirs(tmp_path / f".tmp-generate-{os.getpid()}-inuse")
    models = savedmodels.load_models(saved_models)
    generation.write_dance(str(tmp_path / "dance.mp4"), generation.make_dance(models, np.zeros((3, DIM)), 5), 24.0)
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".tmp")) == [f".tmp-generate-{os.getpid()}-inuse"]


def test_generate_primes_inside_one_clip(saved_models, two_clip_dataset, tmp_path, run_module, fails_cleanly):
    _, _, extras = data.load_dataset(two_clip_dataset)
    clips = extras["clips"]
    (_, cut), _ = data.clip_bounds(clips)
    seed_frames = cut - 10
    args = [f"--model_dir={saved_models}", "--frames=3", f"--seed_frames={seed_frames}", "--noprogress"]
    r = run_module("tf_dance.generate", *args, f"--data={two_clip_dataset}", "--num_dancers=6", "--random_seed=2",
                   f"--out={tmp_path}/a.mp4")
    assert r.returncode == 0, r.stderr[-2000:]
    starts = json.loads(r.stdout.strip().splitlines()[-1])["seed_indices"]
    assert all(clips[s] == clips[s + seed_frames - 1] for s in starts)
    fails_cleanly(run_module("tf_dance.generate", *args, f"--data={two_clip_dataset}", "--seed_index=11",
                             f"--out={tmp_path}/b.mp4"), "run across a cut")
    latents = tmp_path / "z.npy"  # seeding from latents: the clip ids come from z_clips.npy
    np.save(latents, np.zeros((len(clips), DIM), np.float32))
    np.save(tmp_path / "z_clips.npy", clips)
    fails_cleanly(run_module("tf_dance.generate", *args, f"--latents={latents}", "--seed_index=11",
                             f"--out={tmp_path}/c.mp4"), "run across a cut")
    assert not any(os.path.exists(tmp_path / f"{n}.mp4") for n in "bc")


def test_cli_tiles_dancers_seeded_from_latents(run_module, saved_models, tiny_dataset, tmp_path):
    frames, _, _ = data.load_dataset(tiny_dataset)
    latents = str(tmp_path / "latents.npy")
    np.save(latents, np.random.default_rng(0).normal(size=(len(frames), DIM)).astype(np.float32))
    out = tmp_path / "cli" / "trio.mp4"
    result = run_module("tf_dance.generate", f"--lstm={saved_models}/dance_lstm", f"--decoder={saved_models}",
                        f"--latents={latents}", "--frames=12", "--seed_frames=4", "--num_dancers=3",
                        "--seed=7", "--fps=10", f"--out={out}")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 12 and summary["dancers"] == 3 and summary["fps"] == 10.0
    assert len(set(summary["seed_indices"])) == 3 and max(summary["seed_indices"]) <= len(frames) - 4
    assert sorted(os.listdir(out.parent)) == ["trio.gif", "trio.mp4", "trio_latents.npy", "trio_sheet.png"]
    assert np.load(out.parent / "trio_latents.npy").shape == (3, 12, DIM)
    assert _frames_in(str(out), 3 * 96 + 2 * 2, 54) == (12, 10.0)
    assert Image.open(out.parent / "trio.gif").size == (3 * 96 + 2 * 2, 54)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("small") / "small.npz")
    return data.save_dataset(path, np.zeros((40, 48, 64, 1), np.uint8), 24.0)


@pytest.mark.parametrize("args, message", [
    (["--model_dir=/nonexistent"], "not found"),
    (["--seed_index=235"], "beyond the data"),
    (["--frames=0"], "frames"),
    (["--data={small}"], "encoder"),
])
def test_cli_rejects_bad_input_cleanly(run_module, fails_cleanly, saved_models, tiny_dataset, small_dataset,
                                       tmp_path, args, message):
    args = [a.format(small=small_dataset) for a in args]
    if not any(a.startswith("--model_dir") for a in args):
        args.append(f"--model_dir={saved_models}")
    if not any(a.startswith("--data") for a in args):
        args.append(f"--data={tiny_dataset}")
    out = tmp_path / "bad" / "dance.mp4"
    fails_cleanly(run_module("tf_dance.generate", *args, "--seed_frames=10", f"--out={out}"), message)
    assert not out.parent.exists() or os.listdir(out.parent) == []


def _lstm_with_record(saved_models, tmp_path, **changes):
    """A copy of the fixture's dance_lstm/1 (as `<tmp>/models/dance_lstm/1`) with fields of its tf_dance.json
    changed (None: the value null; `...`: the field removed)."""
    import shutil
    root = tmp_path / "models" / "dance_lstm"
    version = str(root / "1")
    shutil.copytree(os.path.join(saved_models, "dance_lstm", "1"), version)
    with open(os.path.join(version, "tf_dance.json")) as f:
        info = json.load(f)
    info.update(changes)
    with open(os.path.join(version, "tf_dance.json"), "w") as f:
        json.dump({k: v for k, v in info.items() if v is not ...}, f)
    return version


@pytest.mark.parametrize("changes, message", [
    (dict(rollout="hot"), "rollout recipe is str, not an object"),
    (dict(rollout=None), "rollout recipe is NoneType"),
    (dict(rollout=[0.7, 0.2]), "rollout recipe is list"),
    (dict(rollout={"temperature": "hot", "noise": 0.1}), "temperature='hot'"),
    (dict(rollout={"temperature": 0.7, "noise": -1}), "noise=-1"),
    (dict(rollout={"temperature": 0.7, "noise": 0.1, "width": None}), "width=None"),
    (dict(block=0), "block 0"),
    (dict(block="32"), "block '32'"),
    (dict(rollout=...), "records no rollout (every export does)"),
    (dict(block=..., max_frames=...), "records no block, max_frames"),
])
def test_a_damaged_recipe_or_block_is_one_error(saved_models, tmp_path, changes, message):
    version = _lstm_with_record(saved_models, tmp_path, **changes)
    with pytest.raises(cli.UserError, match="damaged") as error:
        savedmodels.load_sequence_model(version)
    assert message in str(error.value) and version in str(error.value)


def test_damaged_records_fail_generate_and_evaluate_in_one_line(saved_models, tmp_path, run_module, fails_cleanly):
    """A block the graph does not roll out in surfaces at the first continuation call: one line, nothing written."""
    version = _lstm_with_record(saved_models, tmp_path, block=7)
    latents = str(tmp_path / "z.npy")
    np.save(latents, np.zeros((40, DIM), np.float32))
    out = tmp_path / "out" / "dance.mp4"
    fails_cleanly(run_module("tf_dance.generate", f"--lstm={version}", f"--decoder={saved_models}",
                             f"--latents={latents}", "--frames=40", "--seed_frames=4", f"--out={out}"),
                  "says block 7 but its graph rolls out in blocks of 32")
    assert not out.parent.exists() or os.listdir(out.parent) == []
    other = _lstm_with_record(saved_models, tmp_path / "list", rollout=[1, 2])
    fails_cleanly(run_module("tf_dance.evaluate", f"--model_dir={other}", f"--latents={latents}", "--frames=40",
                             "--seed_frames=4", f"--out_dir={tmp_path}/eval"), "rollout recipe is list")
    assert not (tmp_path / "eval").exists()


def test_an_export_records_its_whole_recipe(saved_models, tmp_path):
    """Exports record their whole recipe, the controls baked into the graph included (a record that lacks it
    is a damaged model: `test_a_damaged_recipe_or_block_is_one_error`)."""
    recorded = savedmodels.load_sequence_model(os.path.join(saved_models, "dance_lstm", "1"))
    assert "width 0.5" in recorded.controls_text()
    import keras
    from tf_dance import rollout, sequence_model
    keras.utils.set_random_seed(0)
    plain = sequence_model.build_model("lstm", DIM, np.zeros(DIM, np.float32), np.ones(DIM, np.float32),
                                       batch_size=1, units=4, num_layers=1)
    info = savedmodels.record(rollout.export(plain, str(tmp_path / "plain"), "dance_lstm"))
    assert info["rollout"] == {"temperature": 1.0, "noise": 0.0, **rollout.SAMPLING}
def test_ctrl_c_stops_generate_with_one_line_and_nothing_written(saved_models, tmp_path, interrupt):
    """SIGINT while the dance is being made and written: exit code 130, one line, no output, no temporary files."""
    import subprocess
    import sys
    import time
    np.save(tmp_path / "latents.npy", np.zeros((50, DIM), np.float32))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    process = subprocess.Popen([sys.executable, "-m", "tf_dance.generate", f"--model_dir={saved_models}",
                                f"--latents={tmp_path}/latents.npy", "--frames=10000000", "--seed_frames=4",
                                f"--out={tmp_path}/dance.mp4"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("[1/2]")
    assert process.stdout.readline().startswith("[2/2] rolling out")
    started = time.time()
    out, err = interrupt(process, lambda: time.time() > started + 3)  # into the rollout and the writing
    assert process.returncode == 130, err[-2000:]
    assert err.strip().splitlines() == ["interrupted; nothing half-written was left"]
    assert sorted(os.listdir(tmp_path)) == ["latents.npy"]
