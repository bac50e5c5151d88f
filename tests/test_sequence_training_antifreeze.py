"""Anti-freeze: the demo's LSTM setting keeps dancing where the paper's recipe freezes.

The paper's LSTM "settled on one pose and stayed frozen there forever" (section 5.3, Figure 7).
Why: a model trained with MSE predicts the conditional mean of the next frame, and fed its own
means back, the rollout of an unpredictable (stochastic) motion slides to a fixed point. The
data here is smooth random motion (low-pass filtered Gaussian noise), whose future is
genuinely uncertain, so a small faithful MSE model freezes on it within seconds, while the
same-size model trained with the settings of flags/quick_lstm.flags keeps moving. Both
verdicts come from `tf_dance.metrics`, the code behind `evaluate`.
"""

import os

import numpy as np
import pytest

from tf_dance import metrics, savedmodels, sequence_training

from conftest import ROOT

FPS = 24.0
# Same tiny size for both models: only the anti-freeze settings differ.
SMALL = dict(units=32, num_layers=2, batch_size=8, seq_length=25, epochs=8, learning_rate=5e-3, dim=0,
             seed=0, jit_compile=True)


def smooth_motion(frames, dim, seed, width=12):
    """Gaussian-smoothed white noise: continuous motion whose next second is never certain."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(frames + 6 * width, dim))
    kernel = np.exp(-0.5 * (np.arange(-3 * width, 3 * width + 1) / width) ** 2)
    kernel /= np.sqrt(np.sum(kernel ** 2))
    return np.stack([np.convolve(noise[:, d], kernel, mode="valid")[:frames] for d in range(dim)],
                    1).astype(np.float32)


@pytest.fixture(scope="module")
def dance(tmp_path_factory):
    latents = smooth_motion(3000, 16, seed=0)
    path = str(tmp_path_factory.mktemp("antifreeze") / "latents.npy")
    np.save(path, latents)
    train = latents[:int(len(latents) * sequence_training.SETTINGS["train_frac"].default)]
    return path, latents, metrics.Reference(train, FPS)


def _train_and_roll(dance, tmp_path, settings, temperature=None, noise=None, frames=3000):
    """temperature/noise None: the rollout recipe the settings recorded in the export."""
    path, latents, reference = dance
    result = sequence_training.train_and_evaluate(path, str(tmp_path / "run"), str(tmp_path / "models"),
                                                  **{**settings, **SMALL})
    generated = savedmodels.rollout(result["export_dir"], latents[:50], frames, temperature=temperature,
                                    noise=noise, random_seed=0)
    return reference.evaluate(generated)


def test_faithful_mse_freezes(dance, tmp_path):
    paper = sequence_training.flagfile_settings(os.path.join(ROOT, "flags", "paper_lstm.flags"))
    faithful = {name: paper[name] for name in ("head", "condition_steps", "input_noise")}
    assert faithful == {"head": "mse", "condition_steps": 0, "input_noise": 0.0}
    report = _train_and_roll(dance, tmp_path, faithful, temperature=0.0, noise=0.0)
    assert report["verdicts"]["frozen"], report["freeze"]
    assert report["motion"]["tail_motion_ratio"] < 0.1


def test_demo_setting_keeps_dancing(dance, tmp_path):
    settings = sequence_training.flagfile_settings(os.path.join(ROOT, "flags", "quick_lstm.flags"))
    assert settings["rollout_noise"] > 0  # the recipe that keeps this model out of loops is a real flag
    assert settings["calibrate_frames"] > 0  # ... and the export's is calibrated on the trained model
    report = _train_and_roll(dance, tmp_path, dict(settings, calibrate_frames=2400))
    assert not report["verdicts"]["frozen"], report["freeze"]
    assert report["freeze"]["longest_still_seconds"] < 1.0
    assert report["motion"]["tail_motion_ratio"] > 0.5, report["motion"]
    assert report["coverage"]["coverage_ratio"] >= 0.5, report["coverage"]


def test_dancing_flagfile_matches_a_real_setting():
    for name in ("quick_lstm.flags", "footage_lstm.flags"):
        settings = sequence_training.flagfile_settings(os.path.join(ROOT, "flags", name))
        sequence_training.resolve_config(settings)  # raises on unknown names or bad values
        assert settings.get("head") == "mdn" or settings.get("condition_steps", 0) > 0 \
            or settings.get("input_noise", 0) > 0, f"{name} holds no anti-freeze setting"
