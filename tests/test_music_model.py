"""Dancing to music: the conditioned LSTM's training, its served signatures, generate --audio, and refusals."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tf_dance import data, music, musicality, perlin, savedmodels, sequence_training, soundtrack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM, FPS = 8, 24.0
F = len(music.NAMES)
TINY = dict(model="lstm", head="mdn", mixtures=2, num_layers=1, units=8, batch_size=2, seq_length=10, epochs=2,
            train_frac=0.9, jit_compile=False)


def _song(frames, seed=3):
    return soundtrack.song(frames, FPS, seed)


@pytest.fixture(scope="module")
def music_latents(tmp_path_factory):
    """Latents `[300, 8]` with the music features of a procedural song saved beside them, as encode saves them."""
    path = str(tmp_path_factory.mktemp("latents") / "z.npy")
    z = perlin.perlin_vectors(300, seed=0, dim=DIM)
    np.save(path, z)
    song = _song(300)
    data.save_latent_music(path, z, music.features(song["audio"], FPS, 300), music.NAMES, FPS)
    return path


@pytest.fixture(scope="module")
def trained(music_latents, tmp_path_factory):
    base = tmp_path_factory.mktemp("trained")
    return sequence_training.train_and_evaluate(music_latents, str(base / "w"), str(base / "models"), music=True,
                                                condition_steps=2, input_noise=0.1, calibrate_frames=120,
                                                calibrate_noise=[0.0, 0.3], rollout_beat_guidance=5.0, **TINY)


@pytest.fixture(scope="module")
def music_models(tmp_path_factory, export_tiny_models):
    """Tiny encoder and decoder with a music-conditioned LSTM beside them (one autoencoder training), and a song."""
    import keras
    from tf_dance import rollout, sequence_model
    root = str(tmp_path_factory.mktemp("music_models"))
    export_tiny_models(root, DIM, {"temperature": 0.5})
    keras.utils.set_random_seed(1)
    mean, std = np.zeros(DIM + F, np.float32), np.ones(DIM + F, np.float32)
    lstm = sequence_model.build_model("lstm", DIM, mean, std, batch_size=1, units=8, num_layers=1, head="mdn",
                                      mixtures=2, music_dim=F)
    export = rollout.export(lstm, root, "dance_music", {"music": {"names": list(music.NAMES), "features": F,
                                                                  "fps": FPS}})
    song = music.write_wav(os.path.join(root, "song.wav"), _song(72)["audio"])  # 3 s
    return dict(root=root, lstm=export, plain=os.path.join(root, "dance_lstm"), song=song)


def test_conditioned_training_exports_a_model_that_dances_to_music(trained, music_latents):
    record = savedmodels.record(trained["export_dir"])
    assert {k: v for k, v in record["music"].items() if k != "beat_speed"} == {"names": list(music.NAMES),
                                                                                 "features": F, "fps": FPS}
    heard = data.load_latent_music(music_latents, np.load(music_latents))[0]
    np.testing.assert_allclose(record["music"]["beat_speed"],
                               musicality.beat_speed(np.load(music_latents), heard, music.NAMES), atol=1e-6)
    assert record["rollout"]["beat_guidance"] == 5.0
    assert record["config"]["music"] is True
    assert len(record["normalization"]["mean"]) == DIM + F
    assert len(record["calibration"]["candidates"]) == 2  # the calibration rolled it out on the training music
    model = savedmodels.load_sequence_model(trained["export_dir"])
    assert model.music_features == F
    z = np.load(music_latents)
    song = music.features(_song(100, seed=9)["audio"], FPS, 100)
    whole = model.rollout(z[:20], 100, random_seed=4, music=song)
    pieces = np.concatenate(list(model.stream(z[:20], 100, random_seed=4, music=song, chunk=32)), 1)[0]
    assert whole.shape == (100, DIM) and np.all(np.isfinite(whole))
    np.testing.assert_allclose(pieces, whole, rtol=1e-5, atol=1e-5)
    other = model.rollout(z[:20], 100, random_seed=4, music=np.roll(song, 12, axis=0))
    assert np.abs(other - whole).max() > 1e-4  # the music changes the dance


def test_conditioned_net_matches_its_keras_model(trained, music_latents):
    """The fused `Net` reads latent + music inputs exactly as the Keras model does."""
    import keras
    from tf_dance import sequence_model
    model = keras.models.load_model(os.path.join(_workdir(trained), "model.keras"))
    net = sequence_model.make_net(model)
    assert net.music_dim == F and net.dim == DIM
    z = np.load(music_latents)
    found = data.load_latent_music(music_latents, z)
    x = sequence_training.music_inputs(z, found[0], np.zeros(len(z), np.int32))[None, :30]
    expected = model(x).numpy()
    got, _ = net.window(net.normalize(x), net.zero_state(1))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)


def _workdir(trained):
    models = os.path.dirname(os.path.dirname(trained["export_dir"]))
    return os.path.join(os.path.dirname(models), "w")


def test_music_inputs_pair_each_latent_with_the_next_frames_music_inside_its_clip():
    z = np.arange(10, dtype=np.float32)[:, None]
    m = 100 + np.arange(10, dtype=np.float32)[:, None]
    clips = np.array([0] * 4 + [1] * 6)
    x = sequence_training.music_inputs(z, m, clips)
    np.testing.assert_array_equal(x[:, 1], [101, 102, 103, 103, 105, 106, 107, 108, 109, 109])
    np.testing.assert_array_equal(x[:, 0], z[:, 0])


_PLAIN_TF = """
import sys
import numpy as np
import tensorflow as tf
path, F = sys.argv[1], int(sys.argv[2])
m = tf.saved_model.load(path)
seed = tf.zeros([2, 5, 8]); music = tf.random.stateless_normal([2, 40, F], [1, 2])
t, n, s = tf.constant(0.5), tf.constant(0.1), tf.constant(3)
whole = m.signatures["rollout"](seed=seed, music=music, temperature=t, noise=n, random_seed=s)["frames"].numpy()
assert whole.shape == (2, 40, 8), whole.shape
first = m.signatures["prime"](seed=seed, music=music[:, 0], temperature=t, random_seed=s)
rest = m.signatures["continue_rollout"](state=first["state"], start=tf.constant(1), music=music[:, 1:33],
                                        temperature=t, noise=n, random_seed=s)
joined = np.concatenate([first["frame"].numpy()[:, None], rest["frames"].numpy()], 1)
assert np.allclose(joined, whole[:, :33], atol=1e-5)
state = m.signatures["initial_state"](batch_size=tf.constant(2))["state"]
step = m.signatures["serving_default"](frame=seed[:, 0], music=music[:, 0], state=state)
assert step["next_frame"].shape == (2, 8)
for bad in (dict(music=music[:1]), dict(music=music[..., :3])):
    try:
        m.signatures["rollout"](**{**dict(seed=seed, music=music, temperature=t, noise=n, random_seed=s), **bad})
    except tf.errors.InvalidArgumentError as e:
        print([ln.strip() for ln in str(e).splitlines() if "assertion failed" in ln][0])
    else:
        raise AssertionError("bad music accepted")
assert not [k for k in sys.modules if k.startswith("tf_dance")]
"""


def test_music_signatures_run_in_plain_tensorflow(music_models, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH="")
    r = subprocess.run([sys.executable, "-c", _PLAIN_TF, music_models["lstm"], str(F)], cwd=str(tmp_path), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    refusals = r.stdout.strip().splitlines()
    assert "music must hold the same batch as the seed or state" in refusals[0]
    assert f"music must have shape [batch, frames, {F}]" in refusals[1]
    np.save(tmp_path / "seed.npy", np.zeros((1, 5, DIM), np.float32))
    np.save(tmp_path / "music.npy", np.zeros((1, 7, F), np.float32))
    r = subprocess.run(
        ["saved_model_cli", "run", f"--dir={music_models['lstm']}", "--tag_set=serve", "--signature_def=rollout",
         f"--inputs=seed={tmp_path / 'seed.npy'};music={tmp_path / 'music.npy'}",
         "--input_exprs=temperature=1.0;noise=0.0;random_seed=0",
         f"--outdir={tmp_path / 'out'}"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.load(tmp_path / "out" / "frames.npy").shape == (1, 7, DIM)


def test_unconditioned_exports_keep_their_signatures(music_models):
    model = savedmodels.load_sequence_model(music_models["plain"])
    assert model.music_features == 0 and "music" not in model.record
    specs = model._rollout.structured_input_signature[1]
    assert sorted(specs) == ["noise", "num_frames", "random_seed", "seed", "temperature"]
    with pytest.raises(Exception, match="not music-conditioned"):
        model.rollout(np.zeros((5, DIM)), 10, music=np.zeros((10, F)))
    with pytest.raises(Exception, match="dances to music"):
        savedmodels.load_sequence_model(music_models["lstm"]).rollout(np.zeros((5, DIM)), 10)


def test_generate_audio_writes_the_dance_with_the_song(music_models, tiny_dancer, tmp_path, run_module):
    np.save(tmp_path / "z.npy", np.zeros((40, DIM), np.float32))
    out = tmp_path / "dance.mp4"
    r = run_module("tf_dance.generate", f"--model_dir={music_models['root']}", f"--lstm={music_models['lstm']}",
                   f"--latents={tmp_path / 'z.npy'}", f"--audio={music_models['song']}", "--seed_frames=5",
                   f"--out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["frames"] == 72  # as long as the 3 s song at 24 fps
    assert len(music.read_audio(str(out))) / music.SAMPLE_RATE == pytest.approx(3.0, abs=0.05)
    assert np.load(tmp_path / "dance_latents.npy").shape == (72, DIM)
    r = run_module("tf_dance.generate", f"--model_dir={music_models['root']}", f"--lstm={music_models['lstm']}",
                   f"--latents={tmp_path / 'z.npy'}", f"--audio={music_models['song']}", "--seed_frames=5",
                   "--frames=30", f"--out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(music.read_audio(str(out))) / music.SAMPLE_RATE == pytest.approx(30 / FPS, abs=0.05)


def test_generate_refuses_mismatched_music_in_one_line(music_models, tiny_video, tmp_path, run_module,
                                                       fails_cleanly):
    np.save(tmp_path / "z.npy", np.zeros((40, DIM), np.float32))
    common = [f"--model_dir={music_models['root']}", f"--latents={tmp_path / 'z.npy'}", "--seed_frames=5",
              f"--out={tmp_path / 'dance.mp4'}"]
    fails_cleanly(run_module("tf_dance.generate", *common, f"--lstm={music_models['lstm']}"),
                  "dances to music: give it a song with --audio")
    fails_cleanly(run_module("tf_dance.generate", *common, f"--lstm={music_models['plain']}",
                             f"--audio={music_models['song']}"), "was trained without music")
    fails_cleanly(run_module("tf_dance.generate", *common, f"--lstm={music_models['lstm']}",
                             f"--audio={tiny_video}"), "has no audio stream")
    fails_cleanly(run_module("tf_dance.generate", *common, f"--lstm={music_models['lstm']}",
                             f"--audio={music_models['song']}", "--fps=30"), "learnt its music at 24 fps")
    assert not os.path.exists(tmp_path / "dance.mp4")


def _guided_speeds(beat_speed, guidance=50.0, frames=2400):
    """The mean log speed of a tiny untrained music model's rollout near the song's beats and half a beat off
    them, with `beat_guidance` steering it towards `beat_speed`."""
    import keras
    from tf_dance import rollout, sequence_model
    keras.utils.set_random_seed(2)
    song = music.features(_song(frames, seed=5)["audio"], FPS, frames)
    heard = np.concatenate([np.zeros((frames, DIM), np.float32), song], 1)
    model = sequence_model.build_model("lstm", DIM, heard.mean(0), heard.std(0) + 1e-3, batch_size=1, units=8,
                                       num_layers=1, head="mdn", mixtures=2, music_dim=F)
    module = rollout.ServingModule(model, sampling=dict(beat_guidance=guidance), beat_speed=beat_speed)
    dance = module.rollout(np.zeros((1, 5, DIM), np.float32), song[None], 1.0, 0.0, 0)["frames"].numpy()[0]
    speed = np.log(np.linalg.norm(np.diff(dance, axis=0), axis=1))
    phase = np.arctan2(song[1:, music.NAMES.index("beat_sin")], song[1:, music.NAMES.index("beat_cos")])
    return speed[np.cos(phase) > 0.7].mean(), speed[np.cos(phase) < -0.7].mean()


def test_beat_guidance_steers_the_rollouts_speed_towards_the_datas_over_the_beat():
    on, off = _guided_speeds([-1.0, 0.0])  # slow on the beat, fast between beats
    assert on < off - 0.3
    on, off = _guided_speeds([1.0, 0.0])  # the other way round
    assert on > off + 0.3


def test_beat_guidance_needs_a_music_model_and_the_datas_beat_speed():
    from tf_dance import cli, rollout, sequence_model
    plain = sequence_model.build_model("lstm", DIM, np.zeros(DIM, np.float32), np.ones(DIM, np.float32),
                                       batch_size=1, units=8, num_layers=1, head="mdn", mixtures=2)
    with pytest.raises(cli.UserError, match="needs a music-conditioned model"):
        rollout.ServingModule(plain, sampling=dict(beat_guidance=1.0), beat_speed=[-1.0, 0.0])
    conditioned = sequence_model.build_model("lstm", DIM, np.zeros(DIM + F, np.float32), np.ones(DIM + F, np.float32),
                                             batch_size=1, units=8, num_layers=1, head="mdn", mixtures=2, music_dim=F)
    with pytest.raises(cli.UserError, match="needs the training data's beat speed"):
        rollout.ServingModule(conditioned, sampling=dict(beat_guidance=1.0))


def test_music_without_music_beside_the_latents_is_refused_in_one_line(tmp_path, run_module, fails_cleanly):
    np.save(tmp_path / "z.npy", perlin.perlin_vectors(300, seed=0, dim=DIM))
    fails_cleanly(run_module("tf_dance.train_lstm", f"--latents={tmp_path / 'z.npy'}", f"--workdir={tmp_path}/w",
                             f"--export_dir={tmp_path}/m", "--flagfile=flags/tiny_lstm.flags", "--music"),
                  "--music needs the music features")
    fails_cleanly(run_module("tf_dance.train_lstm", f"--latents={tmp_path / 'z.npy'}", f"--workdir={tmp_path}/w",
                             f"--export_dir={tmp_path}/m", "--flagfile=flags/tiny_lstm.flags",
                             "--rollout_beat_guidance=5"), "--rollout_beat_guidance needs a music-conditioned model")
    assert not os.path.exists(tmp_path / "m" / "dance_lstm")


def test_music_of_other_latents_is_refused(music_latents, tmp_path):
    z = np.load(music_latents)
    path = str(tmp_path / "z.npy")
    np.save(path, z)
    with open(data.latent_music_path(music_latents), "rb") as f, open(data.latent_music_path(path), "wb") as g:
        g.write(f.read())
    assert data.load_latent_music(path, z)[0].shape == (300, F)
    with pytest.raises(Exception, match="holds the music of other latents"):
        data.load_latent_music(path, z + 1)


def test_encode_keeps_the_datasets_music_beside_the_latents(music_models, tmp_path, run_module):
    from tf_dance import dancer
    d = dancer.dancer(60, seed=4, music=True)
    path = data.save_dataset(str(tmp_path / "d.npz"), d["frames"], FPS, music=d["music"],
                             music_names=d["music_names"])
    r = run_module("tf_dance.encode", f"--data={path}", f"--encoder={music_models['root']}/encoder",
                   f"--out={tmp_path / 'z.npy'}")
    assert r.returncode == 0, r.stderr[-2000:]
    found = data.load_latent_music(str(tmp_path / "z.npy"), np.load(tmp_path / "z.npy"))
    np.testing.assert_array_equal(found[0], d["music"])
    assert list(found[1]) == list(music.NAMES) and found[2] == FPS


def test_the_music_demo_trains_with_music_and_ends_with_a_song_no_training_heard(tmp_path, monkeypatch):
    from tf_dance import demo, musicality
    monkeypatch.setattr(demo, "_sampling_flags", lambda: [])  # the demo's own flags are not defined here
    s = dict(dancer_frames=300, autoencoder_flags="a.flags", lstm_flags="l.flags", frames=60, videos=[], footage=[],
             music=True, music_flags="m.flags", song_seed=musicality.HELD_OUT_SEED)
    made = {"lstm": "L", "decoder": "D", "encoder": "E", "generated": "g.npy",
            "data": data.save_dataset(str(tmp_path / "d.npz"), np.zeros((4, 54, 96, 1), np.uint8), FPS)}
    steps = {name: (script, args(made))
             for name, _, script, args, *_ in demo.plan(str(tmp_path), str(tmp_path / "m"), s, "--seed=0")}
    assert list(steps) == ["synthesize", "autoencoder", "encode", "lstm", "song", "generate", "evaluate"]
    assert "--music" in steps["synthesize"][1] and "--music" in steps["lstm"][1]
    lstm = steps["lstm"][1]  # the music recipe after the LSTM's flagfile, so that it overrides it
    assert lstm.index("--flagfile=m.flags") > lstm.index("--flagfile=l.flags")
    song = [a for a in steps["song"][1] if a.startswith("--video=")][0].split("=", 1)[1]
    assert f"--seed={musicality.HELD_OUT_SEED}" in steps["song"][1]
    assert f"--audio={song}" in steps["generate"][1] and f"--audio={song}" in steps["evaluate"][1]
    plain = {name: args(made)
             for name, _, _, args, *_ in demo.plan(str(tmp_path), str(tmp_path / "m"), dict(s, music=False), "")}
    assert "song" not in plain and not any("--music" in a or "--audio" in a or "m.flags" in a
                                           for a in sum(plain.values(), []))


def test_the_dancer_keeps_the_beat_and_follows_a_tempo_step():
    """The measures can tell: the dancer's poses align with their own song's beats far above a shifted song's,
    and its movement tempo follows a song stepping 20% up and down."""
    from tf_dance import dancer, musicality
    steps = musicality.tempo_song(2160, FPS, seed=11, base_bpm=100.0)  # 30-second sections, as evaluate's
    d = dancer.dancer(2160, seed=4, bpm=steps["bpm"])
    own = musicality.alignment(d["poses"], steps["features"], music.NAMES, FPS)
    shifted = musicality.alignment(d["poses"], np.roll(steps["features"], 7, axis=0), music.NAMES, FPS)
    assert own > 0.5 and own > 2 * shifted
    on, off = (musicality.beat_phases(d["poses"], f, music.NAMES, FPS)
               for f in (steps["features"], np.roll(steps["features"], 7, axis=0)))
    assert len(on) == musicality.PHASE_BINS and sum(on) == pytest.approx(1.0)
    assert on[0] + on[-1] > 0.5 and off[0] + off[-1] < 0.2  # it slows down on the beat, not 7 frames off it
    silence = np.zeros_like(steps["features"])  # no beats found: nothing to place in the beat
    assert musicality.beat_phases(d["poses"], silence, music.NAMES, FPS) == [0.0] * musicality.PHASE_BINS
    on, off = (musicality.beat_speed(d["poses"], f, music.NAMES)  # what beat guidance steers towards
               for f in (steps["features"], np.roll(steps["features"], 7, axis=0)))
    assert len(on) == 2 * musicality.BEAT_HARMONICS and on[0] < -0.3 and off[0] > 0.3
    assert musicality.beat_speed(d["poses"], silence, music.NAMES) == [0.0] * len(on)
    follow = musicality.tempo_follow(d["poses"], FPS, steps["sections"], steps["bpm"])
    assert follow["expected"] == pytest.approx([1.2, 0.8]) and follow["error"] < 0.05
    goals = musicality.goals(own, own / 0.9, shifted, follow)
    assert goals["beat_alignment"]["passed"] and goals["tempo_follow"]["passed"]
    assert not musicality.goals(shifted, own, own)["beat_alignment"]["passed"]


def test_evaluate_measures_a_dance_made_to_a_song(music_latents, music_models, tmp_path, run_module):
    np.save(tmp_path / "dance.npy", np.load(music_latents)[:72])
    r = run_module("tf_dance.evaluate", f"--generated={tmp_path / 'dance.npy'}", f"--latents={music_latents}",
                   f"--audio={music_models['song']}", f"--out_dir={tmp_path / 'eval'}", "--noprogress")
    assert r.returncode == 0, r.stderr[-2000:]
    with open(tmp_path / "eval" / "metrics.json") as f:
        tune = json.load(f)["music"]
    assert 0 <= tune["alignment"] <= 1 and 0 <= tune["data_alignment"] <= 1 and tune["song"] == "song.wav"
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "Dancing to music" in md and "](beat_phase.png)" in md
    assert len(tune["beat_phase"]["rollout"]) == len(tune["beat_phase"]["data"]) == 8
    assert tune["beat_phase"]["unconditioned"] is None
    with Image.open(tmp_path / "eval" / "beat_phase.png") as picture:
        assert picture.size[0] > 300
