"""A small HyperLogLog: approximate distinct counts in fixed memory (2**p registers)."""

from __future__ import annotations

import math
from hashlib import blake2b


class HyperLogLog:
    """p=12: 4096 one-byte registers per column, standard error ~1.6%."""

    def __init__(self, p: int = 12) -> None:
        self.p = p
        self.m = 1 << p
        self.registers = bytearray(self.m)

    def add(self, value: str) -> None:
        h = int.from_bytes(
            blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
            "big",
        )
        index = h >> (64 - self.p)
        rest = h & ((1 << (64 - self.p)) - 1)
        # Position of the first 1-bit in the remaining 64-p bits (1-based).
        rank = (64 - self.p) - rest.bit_length() + 1
        self.registers[index] = max(self.registers[index], rank)

    def count(self) -> int:
        m = self.m
        alpha = 0.7213 / (1 + 1.079 / m)
        estimate = alpha * m * m / sum(2.0**-r for r in self.registers)
        zeros = self.registers.count(0)
        if estimate <= 2.5 * m and zeros:
            # Linear counting is far more accurate while many registers are empty.
            estimate = m * math.log(m / zeros)
        return round(estimate)
