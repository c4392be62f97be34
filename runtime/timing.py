"""Per-step wall-clock timings in milliseconds; every stage reports its steps this way."""
from __future__ import annotations

import time
from contextlib import contextmanager


class Timer:
    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        """Time the block and add it to `name` (a step timed twice adds up)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1e3

    def add(self, prefix: str, timings: dict[str, float]):
        for name, ms in timings.items():
            self.ms[f"{prefix}.{name}"] = ms
