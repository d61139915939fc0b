"""Progress of long verbs: a tqdm bar in a terminal, periodic plain lines in logs."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("rl")


class Progress:
    """Report `done` out of `total` units (frames, iterations) with rate and ETA."""

    def __init__(self, total: int, unit: str, interval_s: float, start: int = 0):
        self.total, self.unit, self.interval_s = total, unit, interval_s
        self.start_done = start
        self.t0 = time.perf_counter()
        self.last_line = self.t0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit=unit, unit_scale=True)

    def update(self, done: int, **fields: float) -> None:
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in fields.items()}, refresh=True)
            return
        if now - self.last_line < self.interval_s and done < self.total:
            return
        self.last_line = now
        rate = (done - self.start_done) / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        extra = " ".join(f"{k}={v:.4g}" for k, v in fields.items())
        log.info(
            "%s %d/%d (%.0f%%) %.0f %s/s ETA %.0fs %s",
            self.unit,
            done,
            self.total,
            100 * done / self.total,
            rate,
            self.unit,
            eta,
            extra,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
