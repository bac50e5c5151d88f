"""Exporting sequence models: the SavedModel signatures that serve a dance.

A version directory `saved_models/dance_lstm/<v>/` serves, with plain TensorFlow:

- `serving_default(frame [B, D], state [B, S]) -> {next_frame, state}`: one stateless step.
  The caller owns the state (LSTM: every layer's h and c packed as [h1, c1, h2, c2, ...];
  FNN: the previous normalised frame), so concurrent requests never share one.
  With the mixture head, `next_frame` is the temperature-0 prediction.
- `initial_state(batch_size int32) -> {state}`: the zero state.
- `rollout(seed [B, T, D], num_frames int32, temperature float32, noise float32,
  random_seed int32) -> {frames [B, num_frames, D]}`: primes on the seed frames, then feeds
  each generated frame back, the whole loop inside the graph. `temperature` scales the
  mixture head's sampling (no effect with MSE); `noise` is the std of Gaussian noise added to
  each fed-back frame, in units of each dimension's training std (the returned frames are
  clean). Randomness uses stateless ops keyed on (random_seed, frame index): a request is
  reproducible and shares no random state with any other.

- `prime(seed [B, T, D], temperature, random_seed) -> {frame [B, D], state}` and
  `continue_rollout(state, start int32, num_frames int32, temperature, noise, random_seed) ->
  {frames [B, num_frames, D], state}`: the same rollout in pieces, for dances too long to hold
  at once. `prime` gives the first generated frame and an opaque rollout state (the LSTM state
  and the last frame); each `continue_rollout` call generates the frames numbered `start` ..
  `start + num_frames - 1` (the first frame is number 0) and returns the state to continue
  from. `num_frames` must be a multiple of the block recorded in `tf_dance.json` (32). Pieces
  joined equal one `rollout` call.

A music-conditioned model (`train_lstm --music`, `M` music features per frame) hears the music of
each frame it generates: `serving_default(frame, music [B, M], state)`, `rollout(seed, music [B, T, M],
temperature, noise, random_seed)` (T frames, frame n hearing music[:, n]; no num_frames),
`prime(seed, music [B, M], temperature, random_seed)` (the music of frame 0) and
`continue_rollout(state, start, music [B, num_frames, M], temperature, noise, random_seed)`. While the
seed primes the LSTM, its music inputs are the training mean but for the last seed frame's, which hears
frame 0's music.

Every signature checks its inputs once per call and refuses, with an InvalidArgumentError whose
"assertion failed: [...]" text says what was wrong, what it cannot serve: seeds, frames and states
of the wrong shape or width (`[batch, frames, D]`, `[batch, D]`, `[batch, S]`), a frame batch
unlike its state's, NaN or inf in any of them, a temperature or noise that is not a finite number
in 0..`MAX_CONTROL`, `num_frames` < 1, and more than `MAX_FRAMES` (1,048,576) generated frames in
one call, all dancers together (batch x num_frames): a longer dance is made in pieces with
`prime`/`continue_rollout`, whose `start + num_frames` must stay below 2**31.
`initial_state` makes at most `MAX_BATCH` (65,536) states. Both bounds are recorded in
`tf_dance.json` (`max_frames`, `max_batch`).

Frames in and out are raw latents; the standardisation is inside the graph. The export's
`tf_dance.json` records the model's kind, sizes, block and rollout recipe; reading exports is
`tf_dance.savedmodels`.

Sampling controls beyond the two signature inputs are baked into an export (the signatures keep
their inputs) and recorded in its recipe (`SAMPLING`): `width` scales the mixture Gaussian's
spread (temperature x width) while the component is still drawn at the temperature; the last
`box_dims` latent dimensions (the stage box of `--stage` latents: centre x, centre y, height)
get their own factor `box_width` (0: the chosen component's mean, no per-frame noise), and with
`box_in_picture` each sampled box keeps its centre inside the frame and its height within the
stage's limits (and is fed back so), so a wandering box cannot take the dancer out of the picture.
A model whose box moves by steps (`train_lstm --box_residual`) carries the stage of its training
frames, and its box is turned back at that stage's walls (reflected, not clipped, so that it does not
pile up there); with coherence its steps are still drawn fresh every frame, as correlated steps add up
to drifts. Its steps also lose their running mean (over `DRIFT_FRAMES`): a walk whose steps lean one way
by a few percent of their spread, as a trained model's can, would otherwise spend its time against one
wall.
`smoothing` and `box_smoothing` low-pass the frames a rollout returns (each returned frame moves
only 1 - smoothing of the way from the previous returned frame to the new sample), so a figure
sampled afresh every frame glides instead of jittering; the LSTM is still fed its own raw
samples, so smoothing changes what is shown, not the dance the model makes (smoothing the
fed-back frames instead made the model loop). `coherence` (rho) correlates the mixture head's
sampling randomness from frame to frame: each frame's standard normals (one per component for its
choice, one per dimension for its spread) are rho x the last frame's + sqrt(1 - rho^2) x fresh ones,
so every frame is still a sample of the model's mixture, but consecutive samples stay close and the
chosen component rarely flips. Sampling independently every frame made a figure trained on little
footage jitter (the mixture's spread is wide there); smoothing the returned frames calmed it by
averaging poses away, coherence keeps them. The opaque rollout state of `prime`/`continue_rollout`
carries, after the LSTM state, the last raw sample, then the last returned frame (with smoothing), the
last normals (with coherence) and the running mean of a residual box's steps: `[B, S + D]`, `[B, S + 2D]`,
or wider.

`beat_guidance` (music-conditioned models with the mixture head) lets the music steer the sampling, not only
the LSTM: each frame after the first is chosen among `BEAT_DRAWS` samples of the mixture, by a Gumbel draw
over `beat_guidance x wanted x z`, where z is each sample's log speed standardised over the draws and `wanted`
is the training data's standardised log speed at this frame's place in the beat (`musicality.beat_speed`,
recorded in the export's `music` record; 0 where the music has no beat). The data's dancers slow down on the
beat, so the rollout picks its slower samples there and its faster ones between beats. Sampled alone, a
frame's randomness made slow-downs of its own and the dance drifted off the beat; chosen among draws, every
frame is still one of the model's samples.
"""

import tensorflow as tf

from tf_dance import cli, controls
from tf_dance import music as music_lib
from tf_dance import savedmodels
from tf_dance import sequence_model
from tf_dance import stage

# A residual box's steps lose their running mean over about this many frames (100 s at 24 fps): long enough
# to leave the dancer's walks across the stage, short enough to take out a step bias of the model.
DRIFT_FRAMES = 2400
CHUNK = 32  # generated frames per compiled block: amortises the per-call cost, wastes < CHUNK steps
# What one call may ask for: generated frames (all dancers together; 512 MiB of 128-d float32) and zero states.
MAX_FRAMES = 2**20
MAX_BATCH = 2**16
MAX_CONTROL = controls.MAX_CONTROL
# The baked-in sampling controls (see the module doc) and their defaults, which sample as before they existed.
SAMPLING = controls.SAMPLING
BEAT_DRAWS = 8  # samples a frame is chosen among with beat_guidance


def check_sampling(sampling, dim):
    """`SAMPLING` updated with `sampling` (a dict, or None), checked for a `dim`-wide model; `cli.UserError` else."""
    sampling = dict(sampling or {})
    unknown = sorted(set(sampling) - set(SAMPLING))
    if unknown:
        raise cli.UserError(f"unknown sampling control(s) {unknown}; known: {sorted(SAMPLING)}")
    out = {**SAMPLING, **sampling}
    for key, value in out.items():
        problem = controls.problem(key, value, dim)
        if problem:
            raise cli.UserError(f"sampling control {key} {problem}")
        if isinstance(SAMPLING[key], float):
            out[key] = float(value)
    box_dims = out["box_dims"]
    if out["box_in_picture"] and box_dims != stage.BOX_DIMS:
        raise cli.UserError(f"sampling control box_in_picture needs box_dims={stage.BOX_DIMS} (the stage box of "
                            f"--stage latents: centre x, centre y, height), got box_dims={box_dims}")
    return out


class ServingModule(tf.Module):
    """Pure-TF step/rollout functions over a trained model's variables."""

    def __init__(self, model, chunk=CHUNK, sampling=None, beat_speed=None):
        """beat_speed: the training data's `musicality.beat_speed`, which `beat_guidance` steers towards."""
        super().__init__()
        self.model = model
        # The underlying tf.Variables, tracked directly: without them TF1-style loaders
        # (`saved_model_cli run`, TF Serving) find no initialised variables to run with.
        self.tf_variables = [v.value for v in model.variables]
        self._net = sequence_model.make_net(model)
        self._chunk_len = chunk
        d, s = self._net.dim, self._net.state_size
        self.sampling = check_sampling(sampling, d)
        box = self.sampling["box_dims"]
        is_box = tf.constant([0.0] * (d - box) + [1.0] * box)
        width, box_width = self.sampling["width"], self.sampling["box_width"] if box else self.sampling["width"]
        self._width = None if width == box_width == 1.0 else width + (box_width - width) * is_box
        smooth = self.sampling["smoothing"]
        box_smooth = self.sampling["box_smoothing"] if box else smooth
        self._smooth = None if smooth == box_smooth == 0.0 else smooth + (box_smooth - smooth) * is_box
        self._coherence = self.sampling["coherence"] if self._net.head.noise_size else 0.0
        self._rho = self._coherence
        if self._coherence and self._net.box_residual:  # its normals draw steps: correlated, they add up to drifts
            fresh = self._net.box_residual
            self._rho = tf.constant([self._coherence] * (self._net.head.noise_size - fresh) + [0.0] * fresh)
        self._noise_mask = self._net.noise_mask() if self._net.box_residual else 1.0
        self._guidance = self.sampling["beat_guidance"]
        if self._guidance:
            if not (self._net.music_dim and self._net.head.noise_size):
                raise cli.UserError("sampling control beat_guidance needs a music-conditioned model with the mixture "
                                    "head (train_lstm --music --head=mdn)")
            if beat_speed is None or not len(beat_speed) or len(beat_speed) % 2:
                raise cli.UserError("sampling control beat_guidance needs the training data's beat speed "
                                    f"(musicality.beat_speed: cos and sin coefficients), got {beat_speed!r}")
            self._beat_speed = tf.reshape(tf.constant(beat_speed, tf.float32), [-1, 2])  # [harmonic, (cos, sin)]
        self._stage = None if self._net.box_stage is None else tuple(tf.constant(v) for v in self._net.box_stage)
        self._picture = None
        if self.sampling["box_in_picture"]:  # the box's limits, normalised: centre inside the frame, a sane height
            low = [0.0] * (d - box) + [0.0, 0.0, stage.MIN_HEIGHT]
            high = [0.0] * (d - box) + [1.0, 1.0, stage.MAX_HEIGHT]
            self._picture = [tf.constant(self._net.normalize(tf.constant([v], tf.float32))[0, -box:])
                             for v in (low, high)]
        # The rollout carries from frame to frame: the last raw sample, the last returned frame (with
        # smoothing) and the last sample's normals (with coherence).
        self._parts = {"raw": d}
        if self._smooth is not None:
            self._parts["shown"] = d
        if self._coherence:
            self._parts["normal"] = self._net.head.noise_size
        self._drift = DRIFT_FRAMES if self._stage is not None else 0
        if self._drift:
            self._parts["drift"] = self._net.box_residual
        carried = sum(self._parts.values())
        self.step = tf.function(self._step, input_signature=[
            tf.TensorSpec([None, d], tf.float32, name="frame"),
            tf.TensorSpec([None, s], tf.float32, name="state")])
        self.initial_state = tf.function(self._initial_state, input_signature=[
            tf.TensorSpec([], tf.int32, name="batch_size")])
        self.rollout = tf.function(self._rollout, input_signature=[
            tf.TensorSpec([None, None, d], tf.float32, name="seed"),
            tf.TensorSpec([], tf.int32, name="num_frames"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.float32, name="noise"),
            tf.TensorSpec([], tf.int32, name="random_seed")])
        self.prime = tf.function(self._prime_signature, input_signature=[
            tf.TensorSpec([None, None, d], tf.float32, name="seed"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="random_seed")])
        self.continue_rollout = tf.function(self._continue, input_signature=[
            tf.TensorSpec([None, s + carried], tf.float32, name="state"),
            tf.TensorSpec([], tf.int32, name="start"),
            tf.TensorSpec([], tf.int32, name="num_frames"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.float32, name="noise"),
            tf.TensorSpec([], tf.int32, name="random_seed")])
        self._generate = tf.function(self._generate_chunk, jit_compile=True)
        m = self._net.music_dim
        if m:  # a music-conditioned model: every signature that steps the model also takes the music
            self.step = tf.function(self._music_step, input_signature=[
                tf.TensorSpec([None, d], tf.float32, name="frame"),
                tf.TensorSpec([None, m], tf.float32, name="music"),
                tf.TensorSpec([None, s], tf.float32, name="state")])
            self.rollout = tf.function(self._music_rollout, input_signature=[
                tf.TensorSpec([None, None, d], tf.float32, name="seed"),
                tf.TensorSpec([None, None, m], tf.float32, name="music"),
                tf.TensorSpec([], tf.float32, name="temperature"),
                tf.TensorSpec([], tf.float32, name="noise"),
                tf.TensorSpec([], tf.int32, name="random_seed")])
            self.prime = tf.function(self._music_prime, input_signature=[
                tf.TensorSpec([None, None, d], tf.float32, name="seed"),
                tf.TensorSpec([None, m], tf.float32, name="music"),
                tf.TensorSpec([], tf.float32, name="temperature"),
                tf.TensorSpec([], tf.int32, name="random_seed")])
            self.continue_rollout = tf.function(self._music_continue, input_signature=[
                tf.TensorSpec([None, s + carried], tf.float32, name="state"),
                tf.TensorSpec([], tf.int32, name="start"),
                tf.TensorSpec([None, None, m], tf.float32, name="music"),
                tf.TensorSpec([], tf.float32, name="temperature"),
                tf.TensorSpec([], tf.float32, name="noise"),
                tf.TensorSpec([], tf.int32, name="random_seed")])

    def signatures(self):
        return {"serving_default": self.step, "initial_state": self.initial_state, "rollout": self.rollout,
                "prime": self.prime, "continue_rollout": self.continue_rollout}

    def _step(self, frame, state):
        net = self._net
        frame, state = _shaped(frame, "frame", [None, net.dim]), _shaped(state, "state", [None, net.state_size])
        frame, state = _checked([
            _require(tf.equal(tf.shape(frame)[0], tf.shape(state)[0]),
                     "frame and state must hold the same batch; got batches", tf.shape(frame)[0], tf.shape(state)[0]),
            _finite(frame, "frame"), _finite(state, "state")], frame, state)
        params, state = net.step(net.normalize(frame), state)
        return {"next_frame": net.denormalize(net.head.point(params)), "state": state}

    def _initial_state(self, batch_size):
        batch_size, = _checked([_require((batch_size >= 0) & (batch_size <= MAX_BATCH),
                                         f"batch_size must be in 0..{MAX_BATCH}; got", batch_size)], batch_size)
        return {"state": self._net.zero_state(batch_size)}

    def _check_seed(self, seed, temperature):
        seed = _shaped(seed, "seed", [None, None, self._net.dim])
        return _checked([
            _require(tf.shape(seed)[1] >= 1, "seed must hold at least one frame; got shape", tf.shape(seed)),
            _finite(seed, "seed"), _control(temperature, "temperature")], seed, temperature)

    def _prime(self, seed, temperature, random_seed, music=None):
        """(first generated frame, LSTM state), both normalised, after reading the seed frames; the frame is
        packed with what the next frame needs (`_parts`). music: the first generated frame's normalised music
        `[B, M]` of a conditioned model, heard with the last seed frame (the earlier ones hear the training
        mean)."""
        net = self._net
        batch = tf.shape(seed)[0]
        x = net.normalize(seed)
        inputs = x
        if music is not None:
            silent = tf.zeros([batch, tf.shape(seed)[1] - 1, net.music_dim])
            inputs = tf.concat([x, tf.concat([silent, music[:, None]], 1)], -1)
        params, state = net.window(inputs, net.zero_state(batch))
        return self._sample(params[:, -1], None, temperature, _seed(random_seed, 0, 0), x[:, -1]), state

    def _sample(self, params, previous, temperature, seed, last_seed_frame=None):
        """The next normalised frame from the head's `params`, with the baked-in sampling controls, packed
        with what the next frame needs (`_parts`). `previous`: the last pack, or None for the first frame
        (after the seed's `last_seed_frame`)."""
        head, normal = self._net.head, None
        if self._coherence:  # each frame's normals: rho x the last frame's + sqrt(1 - rho^2) x fresh ones
            normal = tf.random.stateless_normal([tf.shape(params)[0], head.noise_size], seed)
            if previous is not None:
                rho = self._rho
                normal = rho * self._part(previous, "normal") + (1.0 - rho * rho) ** 0.5 * normal
        x = head.sample(params, temperature, seed, self._width, normal)
        drift = None
        if self._drift:  # the step the model proposes, less the running mean of its proposals
            box = self._net.box_residual
            if previous is None:
                drift = tf.zeros_like(x[:, -box:])
            else:
                drift = self._part(previous, "drift")
                drift += (x[:, -box:] - self._raw(previous)[:, -box:] - drift) / self._drift
                x = tf.concat([x[:, :-box], x[:, -box:] - drift], -1)
        if self._stage is not None:
            x = self._within_stage(x)
        if self._picture is not None:  # a box that would leave the picture is fed back as kept
            box = self.sampling["box_dims"]
            x = tf.concat([x[:, :-box], tf.clip_by_value(x[:, -box:], *self._picture)], -1)
        parts = [x]
        if self._smooth is not None:  # each returned frame moves (1 - smoothing) of the way to the sample
            shown = last_seed_frame if previous is None else self._shown(previous)
            parts.append(x + self._smooth * (shown - x))
        if normal is not None:
            parts.append(normal)
        if drift is not None:
            parts.append(drift)
        return tf.concat(parts, -1) if len(parts) > 1 else x

    def _guided(self, params, previous, heard, temperature, seed):
        """`_sample` chosen among `BEAT_DRAWS` draws by how well its speed fits the beat (`beat_guidance`);
        heard: this frame's normalised music `[B, M]`."""
        net, draws = self._net, BEAT_DRAWS
        batch = tf.shape(params)[0]
        drawn = self._sample(tf.repeat(params, draws, 0), tf.repeat(previous, draws, 0), temperature, seed)
        moved = self._shown(drawn) - tf.repeat(self._shown(previous), draws, 0)
        speed = tf.reshape(tf.math.log(tf.norm(moved, axis=-1) + 1e-6), [batch, draws])
        mean, variance = tf.nn.moments(speed, [1], keepdims=True)
        z = (speed - mean) * tf.math.rsqrt(variance + 1e-12)
        sin, cos = (heard[:, i] * net.std[net.dim + i] + net.mean[net.dim + i]
                    for i in (music_lib.NAMES.index("beat_sin"), music_lib.NAMES.index("beat_cos")))
        phase, beat = tf.atan2(sin, cos), tf.minimum(tf.sqrt(sin * sin + cos * cos), 1.0)
        coefficients = self._beat_speed
        harmonic = tf.range(1.0, coefficients.shape[0] + 1.0)[None] * phase[:, None]
        wanted = beat * tf.reduce_sum(coefficients[:, 0] * tf.cos(harmonic) + coefficients[:, 1] * tf.sin(harmonic), 1)
        uniform = tf.random.stateless_uniform([batch, draws], tf.random.experimental.stateless_fold_in(seed, 1),
                                              minval=1e-20, maxval=1.0)
        choice = tf.argmax(self._guidance * wanted[:, None] * z - tf.math.log(-tf.math.log(uniform)), -1,
                           output_type=tf.int32)
        return tf.gather(tf.reshape(drawn, [batch, draws, drawn.shape[-1]]), choice, batch_dims=1)

    def _within_stage(self, x):
        """A residual box turned back at the walls of the data's stage: a step past a wall is reflected off
        it, so the walk stays within the stage without piling against its walls (as clipping piles it)."""
        box = self._net.box_residual
        low, high = self._stage
        b = x[:, -box:]
        b = tf.where(b > high, 2.0 * high - b, b)
        b = tf.clip_by_value(tf.where(b < low, 2.0 * low - b, b), low, high)
        return tf.concat([x[:, :-box], b], -1)

    def _part(self, packed, name):
        start = 0
        for key, size in self._parts.items():
            if key == name:
                return packed[:, start:start + size]
            start += size
        raise KeyError(name)

    def _raw(self, packed):
        return self._part(packed, "raw")

    def _shown(self, packed):
        return self._part(packed, "shown" if "shown" in self._parts else "raw")

    def _blocks(self, x, state, start, blocks, temperature, noise, random_seed, music=None):
        """Frames `start` .. `start + blocks * CHUNK - 1` after frame `x`: (frames, last frame, state).
        music: the normalised music of those frames `[B, blocks * CHUNK, M]` (conditioned models)."""
        net = self._net
        c = self._chunk_len
        tf.debugging.assert_non_negative(noise, "noise must be >= 0")
        out = tf.TensorArray(tf.float32, size=blocks, element_shape=[None, c, net.dim])
        for i in tf.range(blocks):
            heard = None if music is None else music[:, i * c:(i + 1) * c]
            x, state, frames = self._generate(x, state, start + i * c, temperature, noise, random_seed, heard)
            out = out.write(i, frames)
        frames = tf.reshape(tf.transpose(out.stack(), [1, 0, 2, 3]), [tf.shape(x)[0], -1, net.dim])
        return frames, x, state

    def _rollout(self, seed, num_frames, temperature, noise, random_seed, music=None):
        net = self._net
        seed, temperature = self._check_seed(seed, temperature)
        checked = _checked([*_length_checks(tf.shape(seed)[0], num_frames), _control(noise, "noise")],
                           num_frames, noise, *([] if music is None else [music]))
        num_frames, noise, music = checked if music is not None else (*checked, None)
        blocks = tf.maximum((num_frames - 1 + self._chunk_len - 1) // self._chunk_len, 1)
        rest = None
        if music is not None:  # the frames after the first hear the rest, its last frame held to a whole block
            rest = tf.concat([music[:, 1:], tf.repeat(music[:, -1:], blocks * self._chunk_len - num_frames + 1,
                                                      axis=1)], 1)
        first, state = self._prime(seed, temperature, random_seed, None if music is None else music[:, 0])
        later, _, _ = self._blocks(first, state, 1, blocks, temperature, noise, random_seed, rest)
        frames = tf.concat([self._shown(first)[:, None], later], 1)[:, :num_frames]
        return {"frames": net.denormalize(frames)}

    def _prime_signature(self, seed, temperature, random_seed):
        seed, temperature = self._check_seed(seed, temperature)
        first, state = self._prime(seed, temperature, random_seed)
        return {"frame": self._net.denormalize(self._shown(first)), "state": tf.concat([state, first], 1)}

    def _continue(self, state, start, num_frames, temperature, noise, random_seed, music=None):
        net = self._net
        width = net.state_size + sum(self._parts.values())
        state = _shaped(state, "state", [None, width])
        state, start, num_frames = _checked([
            _finite(state, "state"),
            *_length_checks(tf.shape(state)[0], num_frames),
            _require(tf.equal(num_frames % self._chunk_len, 0), f"num_frames must be a multiple of {self._chunk_len}; "
                     "got", num_frames),
            _require(start >= 1, "start must be >= 1 (frame 0 comes from prime); got", start),
            _require(tf.cast(start, tf.int64) + tf.cast(num_frames, tf.int64) < 2**31,
                     "start + num_frames must be below 2**31; got", start, num_frames),
            _control(temperature, "temperature"), _control(noise, "noise")], state, start, num_frames)
        lstm_state, x = state[:, :net.state_size], state[:, net.state_size:]
        frames, x, lstm_state = self._blocks(x, lstm_state, start, num_frames // self._chunk_len, temperature,
                                             noise, random_seed, music)
        return {"frames": net.denormalize(frames), "state": tf.concat([lstm_state, x], 1)}

    def _check_music(self, music, batch, shape):
        """`music` normalised, after checks of its shape, batch (the same as `batch`) and values."""
        music = _shaped(music, "music", shape)
        music, = _checked([_require(tf.equal(tf.shape(music)[0], batch), "music must hold the same batch as the "
                                    "seed or state; got batches", tf.shape(music)[0], batch),
                           _finite(music, "music")], music)
        return self._net.normalize_music(music)

    def _music_step(self, frame, music, state):
        net = self._net
        frame, state = _shaped(frame, "frame", [None, net.dim]), _shaped(state, "state", [None, net.state_size])
        music = self._check_music(music, tf.shape(frame)[0], [None, net.music_dim])
        frame, state = _checked([
            _require(tf.equal(tf.shape(frame)[0], tf.shape(state)[0]),
                     "frame and state must hold the same batch; got batches", tf.shape(frame)[0], tf.shape(state)[0]),
            _finite(frame, "frame"), _finite(state, "state")], frame, state)
        params, state = net.step(tf.concat([net.normalize(frame), music], -1), state)
        return {"next_frame": net.denormalize(net.head.point(params)), "state": state}

    def _music_rollout(self, seed, music, temperature, noise, random_seed):
        """`rollout` dancing to `music` `[B, T, M]`: T frames, frame n hearing music[:, n]."""
        music = self._check_music(music, tf.shape(seed)[0], [None, None, self._net.music_dim])
        return self._rollout(seed, tf.shape(music)[1], temperature, noise, random_seed, music)

    def _music_prime(self, seed, music, temperature, random_seed):
        seed, temperature = self._check_seed(seed, temperature)
        music = self._check_music(music, tf.shape(seed)[0], [None, self._net.music_dim])
        first, state = self._prime(seed, temperature, random_seed, music)
        return {"frame": self._net.denormalize(self._shown(first)), "state": tf.concat([state, first], 1)}

    def _music_continue(self, state, start, music, temperature, noise, random_seed):
        """`continue_rollout` of the frames that hear `music` `[B, num_frames, M]`."""
        music = self._check_music(music, tf.shape(state)[0], [None, None, self._net.music_dim])
        return self._continue(state, start, tf.shape(music)[1], temperature, noise, random_seed, music)

    def _generate_chunk(self, x, state, start, temperature, noise, random_seed, music=None):
        """`CHUNK` closed-loop steps; frame n is fed back with noise seeded by (random_seed, n).

        A while loop rather than unrolled steps: XLA compiles it in a fraction of the time, and
        at batch 1 the step is bound by reading the weights, not by loop overhead."""
        net = self._net

        def body(t, x, state, frames):
            n = start + t
            raw = self._raw(x)
            fed = raw + self._noise_mask * noise * tf.random.stateless_normal(tf.shape(raw),
                                                                              _seed(random_seed, n - 1, 1))
            if music is not None:
                fed = tf.concat([fed, music[:, t]], -1)
            params, state = net.step(fed, state)
            if self._guidance:
                x = self._guided(params, x, music[:, t], temperature, _seed(random_seed, n, 0))
            else:
                x = self._sample(params, x, temperature, _seed(random_seed, n, 0))
            return t + 1, x, state, frames.write(t, self._shown(x))

        frames = tf.TensorArray(tf.float32, size=self._chunk_len, element_shape=self._shown(x).shape)
        _, x, state, frames = tf.while_loop(lambda t, *_: t < self._chunk_len, body, (0, x, state, frames),
                                            maximum_iterations=self._chunk_len)
        return x, state, tf.transpose(frames.stack(), [1, 0, 2])


def _require(condition, message, *values):
    """A run-time check whose failure names what was wrong in the client's words. The bare Assert op:
    tf.debugging's checks are skipped where the traced shape looks right (a loaded signature is fed any
    shape), and `tf.debugging.Assert` wraps float data in a cond that made each step call 50% slower."""
    return tf.raw_ops.Assert(condition=condition, data=[message, *values], summarize=8)


def _checked(checks, *tensors):
    """`tensors`, available only after every check has passed."""
    with tf.control_dependencies(checks):
        return [tf.identity(t) for t in tensors]


def _shaped(x, name, shape):
    """`x` after a check that it is `shape` (None: any size). The element count is compared with the product
    of the expected sizes, which the graph cannot know in advance (a check of the rank would be folded away
    by the traced shape); EnsureShape then catches what a zero-size batch hides."""
    dims = tf.shape(x, out_type=tf.int64)
    padded = tf.concat([dims, tf.ones([len(shape)], tf.int64)], 0)  # a lower rank indexes no further than its end
    expected = tf.constant(1, tf.int64)
    for i, size in enumerate(shape):
        expected *= padded[i] if size is None else size
    wanted = "[" + ", ".join(("batch", "frames")[i] if size is None else str(size)
                             for i, size in enumerate(shape)) + "]"
    ok = tf.equal(tf.size(x, out_type=tf.int64), expected)
    with tf.control_dependencies([_require(ok, f"{name} must have shape {wanted}; got shape", dims)]):
        return tf.ensure_shape(x, shape)


def _finite(x, name):
    return _require(tf.reduce_all(tf.math.is_finite(x)), f"{name} must hold only finite values (no NaN or inf)")


def _control(value, name):
    return _require(tf.math.is_finite(value) & (value >= 0) & (value <= MAX_CONTROL),
                    f"{name} must be a finite number in 0..{MAX_CONTROL:g}; got", value)


def _length_checks(batch, num_frames):
    frames = tf.cast(batch, tf.int64) * tf.cast(num_frames, tf.int64)
    return [_require(num_frames >= 1, "num_frames must be >= 1; got", num_frames),
            _require(frames <= MAX_FRAMES, f"one call generates at most {MAX_FRAMES} frames (batch x num_frames); "
                     "make a longer dance in pieces with prime and continue_rollout; got batch", batch,
                     "num_frames", num_frames)]


def _seed(random_seed, frame, stream):
    return tf.stack([tf.cast(random_seed, tf.int64), 2 * tf.cast(frame, tf.int64) + stream])


def export(model, export_dir, name, metadata=None, recipe=None):
    """Writes `export_dir/name/<next version>/` atomically; returns that directory.

    recipe: the rollout recipe, `{"temperature", "noise"}` (what callers pass to the signatures)
    and any `SAMPLING` controls, which are baked into the graph; all of it is recorded in
    `tf_dance.json` under "rollout" (temperature 1 and noise 0 where not given)."""
    recipe = dict(recipe or {})
    sampling = {k: recipe.pop(k) for k in list(recipe) if k in SAMPLING}
    module = ServingModule(model, sampling=sampling,
                           beat_speed=((metadata or {}).get("music") or {}).get("beat_speed"))
    net = module._net
    info = {"model": "lstm" if isinstance(net, sequence_model.LSTMNet) else "fnn",
            "head": "mdn" if isinstance(net.head, sequence_model.MixtureHead) else "mse",
            "dim": net.dim, "state_size": net.state_size, "block": module._chunk_len, "max_frames": MAX_FRAMES,
            "max_batch": MAX_BATCH, **(metadata or {})}
    if net.music_dim:
        info["music"] = {"features": net.music_dim, **info.get("music", {})}
    info["rollout"] = {"temperature": 1.0, "noise": 0.0, **recipe, **module.sampling}

    def write(tmp):
        # Serving never differentiates: the LSTM's custom gradient is left out (a quarter of the export's time).
        tf.saved_model.save(module, tmp, signatures=module.signatures(),
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        savedmodels.write_record(tmp, info)

    return cli.export_version(export_dir, name, write)
