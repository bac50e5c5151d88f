import numpy as np

from tf_dance import perlin


def test_gradient_noise_vanishes_on_the_lattice_and_varies_between():
    noise = perlin.GradientNoise(3)
    ints = np.arange(-5, 40)
    np.testing.assert_allclose(noise.noise1(ints), 0.0, atol=1e-12)
    np.testing.assert_allclose(noise.noise2(ints[:, None], ints[None, :]), 0.0, atol=1e-12)
    xs = np.linspace(0, 30, 3001)
    grid = noise.noise2(xs[:, None], xs[None, ::10])
    assert np.abs(grid).max() <= 1.0 + 1e-9
    assert grid.std() > 0.15
    line = noise.noise1(xs)
    assert np.abs(line).max() <= 1.0 + 1e-9 and line.std() > 0.15


def test_perlin_vectors_are_smooth_bounded_and_seeded():
    v = perlin.perlin_vectors(2000, seed=1, dim=10, fps=24, rate=0.5)
    assert v.shape == (2000, 10) and v.dtype == np.float32
    assert np.abs(v).max() <= 1.0 and v.std() > 0.15
    assert np.abs(np.diff(v, axis=0)).max() < 0.1
    corr = np.corrcoef(v.T)[~np.eye(10, dtype=bool)]
    assert np.abs(corr).max() < 0.9
    np.testing.assert_array_equal(v, perlin.perlin_vectors(2000, seed=1))
    assert not np.allclose(v, perlin.perlin_vectors(2000, seed=2))


def test_perlin_strips_show_recent_values():
    v = np.linspace(-1, 1, 30, dtype=np.float32)[:, None].repeat(2, axis=1)
    strips = perlin.perlin_strips(v, height=20, width=8)
    assert strips.shape == (30, 20, 8, 1) and strips.dtype == np.uint8
    assert strips[29, 0, -1, 0] == 255 and strips[0, 0, 0, 0] == 0
    assert (np.diff(strips[29, 0, :, 0].astype(int)) > 0).all()
