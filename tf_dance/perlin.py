"""The paper's section 5.3 sanity set and the smooth noise that also drives the dancer.

Perlin's gradient noise, in 1-D (slow drifts of the dancer's tempo, joints and position) and
2-D; `perlin_vectors` traces rows of a 2-D map over time (Figure 6) and `perlin_strips` makes
such vectors viewable.
"""

import math

import numpy as np

from tf_dance import data


def _fade(t):
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


class GradientNoise:
    """Perlin's gradient noise on an integer lattice: random gradients, quintic interpolation.

    Zero at every lattice point and smooth in between; scaled so values lie in about [-1, 1].
    """

    SIZE = 256

    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        self.perm = rng.permutation(self.SIZE)
        angles = rng.uniform(0.0, 2.0 * np.pi, self.SIZE)
        self.grad2 = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
        self.grad1 = rng.uniform(-1.0, 1.0, self.SIZE)

    def _hash(self, i, j=None):
        h = self.perm[np.asarray(i) % self.SIZE]
        return h if j is None else self.perm[(h + j) % self.SIZE]

    def noise1(self, x):
        x = np.asarray(x, np.float64)
        i = np.floor(x).astype(np.int64)
        f = x - i
        n0 = self.grad1[self._hash(i)] * f
        n1 = self.grad1[self._hash(i + 1)] * (f - 1.0)
        return 2.0 * (n0 + _fade(f) * (n1 - n0))

    def noise2(self, x, y):
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        i, j = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
        fx, fy = x - i, y - j

        def corner(di, dj):
            g = self.grad2[self._hash(i + di, j + dj)]
            return g[..., 0] * (fx - di) + g[..., 1] * (fy - dj)

        u, v = _fade(fx), _fade(fy)
        bottom = corner(0, 0) + u * (corner(1, 0) - corner(0, 0))
        top = corner(0, 1) + u * (corner(1, 1) - corner(0, 1))
        return math.sqrt(2.0) * (bottom + v * (top - bottom))

    def fractal2(self, x, y, octaves=2, persistence=0.5):
        """Sum of octaves at doubling frequency, normalised back to about [-1, 1]."""
        total, norm = 0.0, 0.0
        for o in range(octaves):
            amp, freq = persistence ** o, 2.0 ** o
            total = total + amp * self.noise2(np.asarray(x) * freq, np.asarray(y) * freq + 31.7 * o)
            norm += amp
        return total / norm


def perlin_vectors(frames, seed=0, dim=10, fps=24.0, rate=0.5, octaves=2):
    """`[frames, dim]` float32: dimension d follows row d of a 2-D noise map at `rate` cells/s."""
    noise = GradientNoise(seed)
    t = np.arange(frames)[:, None] * (rate / fps)
    rows = 2.5 * np.arange(dim)[None, :] + 0.37
    return noise.fractal2(t, rows, octaves=octaves).astype(np.float32)


def perlin_strips(vectors, height=data.HEIGHT, width=data.WIDTH):
    """A viewable uint8 video of a vector sequence: one scrolling gray strip per dimension."""
    n, dim = vectors.shape
    rows = max(1, height // dim)
    idx = np.arange(n)[:, None] - (width - 1) + np.arange(width)[None, :]
    values = np.where(idx[..., None] >= 0, vectors[np.clip(idx, 0, None)], -1.0)
    gray = np.clip((values + 1.0) * 127.5, 0, 255).astype(np.uint8).transpose(0, 2, 1)
    strips = np.repeat(gray, rows, axis=1)[:, :height]
    out = np.zeros((n, height, width, 1), np.uint8)
    out[:, :strips.shape[1], :, 0] = strips
    return out
