"""evaluate: the report on an existing rollout, a fresh rollout of an exported LSTM, and bad input."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tf_dance import data, report

from conftest import ROOT, dance_latents

FPS = 24.0
DIM = 16


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    train = dance_latents(3000, seed=0, dim=DIM)
    frozen = np.concatenate([train[100:148], np.repeat(train[148:149], 400, axis=0)])
    paths = dict(root=root, train=str(root / "train.npy"), frozen=str(root / "frozen.npy"),
                 dancers=str(root / "dancers.npy"), wrong=str(root / "wrong.npy"),
                 badclips=str(root / "badclips.npy"), huge=str(root / "huge.npy"),
                 huge_generated=str(root / "huge_generated.npy"))
    np.save(paths["train"], train)
    np.save(paths["frozen"], frozen)
    np.save(paths["dancers"], np.stack([dance_latents(400, seed=s, dim=DIM) for s in (3, 4)]))
    np.save(paths["wrong"], np.zeros((100, DIM + 1), np.float32))
    np.save(paths["badclips"], train)
    np.save(paths["huge"], train * np.float32(1e30))  # finite, but beyond what can be measured or learnt
    np.save(paths["huge_generated"], frozen * np.float32(1e30))
    np.save(root / "badclips_clips.npy", np.zeros(len(train) - 1, np.int32))  # one id short
    return paths


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """An untrained 1-layer LSTM (it settles into a pose within a few frames) and a tiny decoder."""
    import keras
    from tf_dance import autoencoder, cli, rollout, sequence_model
    root = str(tmp_path_factory.mktemp("saved_models"))
    train = dance_latents(3000, seed=0, dim=DIM)
    mean, std = sequence_model.standardizer(train)
    lstm = sequence_model.build_model("lstm", DIM, mean, std, batch_size=1, units=8, num_layers=1)
    rollout.export(lstm, root, "dance_lstm")
    keras.utils.set_random_seed(0)
    decoder = autoencoder.build_decoder(54, 96, 1, [2, 2, 2, 2], latent_dim=DIM)
    cli.export_version(root, "decoder", lambda d: autoencoder.export_decoder(decoder, d))
    return root


def _no_temp_left(directory):
    return not [n for n in os.listdir(directory) if n.startswith(".tmp")]


def test_cli_on_a_frozen_rollout(run_module, files):
    out = files["root"] / "eval_frozen"
    result = run_module("tf_dance.evaluate", f"--generated={files['frozen']}", f"--latents={files['train']}",
                        f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    assert "frozen: YES" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["verdicts"]["frozen"] and not metrics["verdicts"]["copying"]
    freeze = metrics["dancers"][0]["freeze"]
    assert freeze["longest_still_seconds"] == pytest.approx(400 / FPS, abs=0.1)
    text = (out / "report.md").read_text()
    for name in ("figure7_motion.png", "coverage.png", "novelty.png"):
        assert f"({name})" in text
        assert Image.open(out / name).size[0] > 300
    assert _no_temp_left(files["root"])


@pytest.mark.parametrize("args, message", [
    (["--generated=/nonexistent.npy"], "not found"),
    (["--generated={wrong}"], "17-d but the training latents are 16-d"),
    (["--generated={frozen}", "--model_dir=/x"], "exactly one of --model_dir"),
    (["--model_dir=/nonexistent"], "not found"),
    (["--generated={frozen}", "--latents=/nonexistent.npy"], "not found"),
    (["--generated={frozen}", "--latents={badclips}"], "has 2999 clip ids but"),
    (["--generated={frozen}", "--copy_fraction=nan"], "--copy_fraction must be a finite number, got nan"),
    (["--generated={frozen}", "--freeze_fraction=nan"], "--freeze_fraction must be a finite number, got nan"),
    (["--generated={frozen}", "--min_freeze_seconds=nan"], "--min_freeze_seconds must be a finite number"),
    (["--generated={frozen}", "--window_seconds=inf"], "--window_seconds must be a finite number, got inf"),
    (["--generated={frozen}", "--fps=1e-30"], "--fps"),
    (["--generated={frozen}", "--latents={huge}"], "huge.npy: latent values reach"),
    (["--generated={huge_generated}"], "generated latents (the rollout diverged): latent values reach"),
])
def test_cli_rejects_bad_input_cleanly(run_module, fails_cleanly, files, args, message):
    out = files["root"] / "eval_bad"
    args = [a.format(**files) for a in args]
    if not any(a.startswith("--latents") for a in args):
        args.append(f"--latents={files['train']}")
    fails_cleanly(run_module("tf_dance.evaluate", *args, f"--out_dir={out}"), message)
    assert not out.exists() and _no_temp_left(files["root"])


def test_report_for_several_dancers(files, tmp_path):
    generated = data.load_latents(files["dancers"], dancers=True)
    train = np.load(files["train"])
    result = report.evaluate_dance(generated, train, FPS, str(tmp_path / "eval"), progress=False,
                                   options=dict(note="two dancers"))
    assert len(result["dancers"]) == 2 and result["options"]["note"] == "two dancers"
    assert not any(result["verdicts"].values()), result["verdicts"]
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert on_disk["verdicts"] == result["verdicts"]
    assert "## Dancer 1" in (tmp_path / "eval" / "report.md").read_text()


def test_rollout_of_an_untrained_lstm_is_frozen(run_module, files, tiny_models):
    out = files["root"] / "eval_rollout"
    result = run_module("tf_dance.evaluate", f"--model_dir={tiny_models}/dance_lstm", f"--latents={files['train']}",
                        "--frames=300", "--seed_index=10", "--seed_frames=20", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["verdicts"]["frozen"]  # the paper's Figure 7: an LSTM settling on one pose
    assert metrics["options"]["seed_index"] == 10
    assert np.load(out / "generated.npy").shape == (300, DIM)


def test_rollout_is_primed_inside_one_clip(run_module, fails_cleanly, files, tiny_models, tmp_path):
    latents = tmp_path / "two.npy"
    np.save(latents, np.load(files["train"]))
    np.save(tmp_path / "two_clips.npy", np.repeat(np.int32([0, 1]), 1500))
    args = [f"--model_dir={tiny_models}/dance_lstm", f"--latents={latents}", "--frames=50", "--seed_frames=20"]
    across = run_module("tf_dance.evaluate", *args, "--seed_index=1490", f"--out_dir={tmp_path / 'across'}")
    fails_cleanly(across, "choose a window inside one clip")
    inside = run_module("tf_dance.evaluate", *args, "--seed_index=1480", f"--out_dir={tmp_path / 'inside'}")
    assert inside.returncode == 0, inside.stderr
    assert json.loads((tmp_path / "inside" / "metrics.json").read_text())["options"]["seed_index"] == 1480


def test_decoded_pictures(files, tiny_models, tmp_path):
    from tf_dance import savedmodels
    train, frozen = np.load(files["train"]), np.load(files["frozen"])
    data_frames = np.zeros((10, 54, 96, 1), np.uint8)
    data_frames[:, 20:40, 40:50] = 255
    result = report.evaluate_dance(frozen, train, FPS, str(tmp_path / "eval"), progress=False,
                                   decoder_dir=savedmodels.resolve(tiny_models, "decoder", "decoder"),
                                   data_frames=data_frames)
    for name in ("figure2_strip.png", "figure5_average.png", "figure7_last_frames.png"):
        assert Image.open(tmp_path / "eval" / name).size[0] > 300
        assert f"({name})" in (tmp_path / "eval" / "report.md").read_text()
    average = np.asarray(Image.open(tmp_path / "eval" / "figure5_average.png").convert("L"))
    assert average.max() == 255  # the data's average silhouette is drawn (white block, 3x upscaled)
    assert 0 <= result["pictures"]["crispness"] <= 1
    # A frozen rollout decodes to the same picture for all but its first 48 frames.
    assert result["pictures"]["screen_motion_ratio"] < 0.25 and result["verdicts"]["still_on_screen"]
    assert "on-screen motion" in (tmp_path / "eval" / "report.md").read_text()


def test_cli_reads_clip_ids_beside_the_latents(run_module, tmp_path):
    a, b = dance_latents(1500, seed=0, dim=DIM), dance_latents(1500, seed=1, dim=DIM) + 20.0  # two clips far apart
    np.save(tmp_path / "latents.npy", np.concatenate([a, b]))
    np.save(tmp_path / "latents_clips.npy", np.repeat(np.int32([0, 1]), 1500))
    np.save(tmp_path / "replay.npy", b)
    result = run_module("tf_dance.evaluate", f"--generated={tmp_path / 'replay.npy'}",
                        f"--latents={tmp_path / 'latents.npy'}", f"--out_dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr
    assert "goals (second half): freeze: met" in result.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["data"]["clips"] == 2
    # the jump between the clips is no motion: a replay of one clip moves exactly as the data does
    assert metrics["dancers"][0]["motion"]["motion_ratio"] == pytest.approx(1.0, abs=0.05)
    assert metrics["goals"]["stage_coverage"]["passed"] is None  # nothing decoded
    assert metrics["goals"]["stage_range"]["passed"] is None
    # a replay of the second clip alone dances one of the two clips' styles
    assert metrics["goals"]["clip_balance"]["passed"] is False and metrics["goals"]["clip_balance"]["values"] == [0.0]
    assert "goals (second half): freeze: met" in result.stdout and "clip_balance: MISSED" in result.stdout
    text = (tmp_path / "eval" / "report.md").read_text()
    assert "## Goals" in text and "| clip balance (x data) |" in text
    assert "| 2nd half: share of frames nearest to clip 1 | 1 | 0.5 |" in text


def _evaluate_into(out, files):
    train, frozen = np.load(files["train"]), np.load(files["frozen"])
    return report.evaluate_dance(frozen, train, FPS, str(out), progress=False)


def test_out_dir_is_replaced_only_when_evaluate_wrote_it(files, tmp_path):
    from tf_dance import cli
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    _evaluate_into(mine, files)
    (mine / "stale.png").write_text("from the last run")
    _evaluate_into(mine, files)
    assert (mine / "metrics.json").exists() and not (mine / "stale.png").exists()
    theirs.mkdir()
    (theirs / "notes.txt").write_text("the user's own")
    with pytest.raises(cli.UserError, match="did not write"):
        _evaluate_into(theirs, files)
    assert os.listdir(theirs) == ["notes.txt"] and _no_temp_left(tmp_path)


def test_cli_never_deletes_the_working_directory_or_its_inputs(files, fails_cleanly, tmp_path):
    import shutil
    import subprocess
    import sys
    shutil.copy(files["train"], tmp_path / "train.npy")
    shutil.copy(files["frozen"], tmp_path / "frozen.npy")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))

    def evaluate(out_dir, latents="train.npy"):
        return subprocess.run([sys.executable, "-m", "tf_dance.evaluate", "--generated=frozen.npy",
                               f"--latents={latents}", f"--out_dir={out_dir}", "--noprogress"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    fails_cleanly(evaluate("."), "holds the working directory")
    assert sorted(os.listdir(tmp_path)) == ["frozen.npy", "train.npy"]
    assert evaluate("eval").returncode == 0
    shutil.copy(tmp_path / "train.npy", tmp_path / "eval" / "train.npy")  # an input inside evaluate's own output
    fails_cleanly(evaluate("eval", latents="eval/train.npy"), "holds the input")
    assert (tmp_path / "eval" / "train.npy").exists() and (tmp_path / "eval" / "metrics.json").exists()
