"""torch's CPU normal noise in numpy: the same numbers for a seed, without importing torch.

`torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))` draws from a Mersenne Twister (mt19937,
seeded like numpy's legacy `RandomState(seed)`): one 32-bit draw per element, of which 24 bits make a uniform
float in [0, 1); then every 16 values become normal ones by Box-Muller, the first 8 giving the radii and the last
8 the angles (ATen's `normal_fill`). When the count is no multiple of 16, the last 16 values are drawn again and
transformed alone. torch computes the logarithm, sine and cosine in float32 with vector approximations (which
ones depends on the CPU's instruction set), so its numbers and these (computed in float64, then rounded) agree to
about 1e-6, not to the bit: about a third of them are the same to the bit.

The generator keeps its state between calls, like torch's: an ancestral sampler's noise at each step continues
the same stream.
"""

from __future__ import annotations

import numpy as np

BLOCK = 16
"""Values transformed together (ATen's normal_fill_16)."""


class TorchGenerator:
    """A stand-in for `torch.Generator("cpu").manual_seed(seed)` that draws float32 normal noise."""

    def __init__(self, seed: int):
        self.state = np.random.RandomState(seed & 0xFFFFFFFF)  # torch's mt19937 keeps the low 32 bits of a seed

    def _uniform(self, count: int) -> np.ndarray:
        bits = self.state.randint(0, 2**32, size=count, dtype=np.uint64)
        return (bits & 0xFFFFFF).astype(np.float64) * 2.0**-24

    def randn(self, shape: tuple[int, ...]) -> np.ndarray:
        """Normal noise of `shape` in float32, as torch.randn gives it for this generator (16 values or more)."""
        size = int(np.prod(shape))
        if size < BLOCK:
            raise ValueError(f"torch draws fewer than {BLOCK} normal values another way; asked for {size}")
        data = self._uniform(size)
        whole = size - size % BLOCK
        data[:whole] = _box_muller(data[:whole])
        if size % BLOCK:
            data[size - BLOCK :] = _box_muller(self._uniform(BLOCK))
        return data.astype(np.float32).reshape(shape)


def _box_muller(uniform: np.ndarray) -> np.ndarray:
    """Each block of 16 uniforms: radii from the first 8, angles from the last 8 (ATen's normal_fill_16)."""
    blocks = uniform.astype(np.float32).astype(np.float64).reshape(-1, 2, BLOCK // 2)
    radius = np.sqrt(-2.0 * np.log(1.0 - blocks[:, 0]))
    theta = 2.0 * np.pi * blocks[:, 1]
    return np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1).reshape(-1)
