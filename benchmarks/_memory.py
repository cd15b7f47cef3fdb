"""Resident-memory measurement shared by the benchmarks (Linux /proc; zeros elsewhere)."""

from __future__ import annotations

import os
import threading
import time

__all__ = ["rss_mb", "PeakSampler"]


def rss_mb() -> float:
    """Current resident memory (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


class PeakSampler:
    """Samples resident memory every millisecond in a thread; ``peak`` over the block."""

    def __enter__(self):
        self.peak, self._stop = rss_mb(), False

        def loop():
            while not self._stop:
                self.peak = max(self.peak, rss_mb())
                time.sleep(0.001)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


