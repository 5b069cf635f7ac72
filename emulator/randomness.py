"""Seeded randomness: rand(), CryptGenRandom and friends all draw from the scenario's seed."""

from __future__ import annotations

import random


class SeededRandom:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._crt = random.Random(seed)

    def crt_srand(self, value: int) -> None:
        # The sample's own seed is mixed with the scenario's, so --seed still varies rand().
        self._crt = random.Random(f"{self.seed}:{value & 0xFFFFFFFF}")

    def crt_rand(self) -> int:
        return self._crt.randrange(0x8000)

    def random_bytes(self, size: int) -> bytes:
        return self._rng.randbytes(size)
