"""The pace of a batch's submissions: at most ``submits_per_second``, slower after a 429."""

from __future__ import annotations

import time

#: The slowest a batch goes after repeated 429s: one submission every this many seconds.
MAX_INTERVAL_SECONDS = 30.0


class Pacer:
    """Spaces submissions; a 429 doubles the spacing (and honours ``Retry-After``), each accepted
    submission brings it back a tenth of the way to the configured pace.

    :param per_second: the configured pace.
    """

    def __init__(self, per_second: float) -> None:
        self.base_interval = 1.0 / per_second
        self.interval = self.base_interval
        self._next_at = 0.0

    def wait(self) -> None:
        """Sleep until the next submission may start, and book the one after it."""
        now = time.monotonic()
        if self._next_at > now:
            time.sleep(self._next_at - now)
            now = self._next_at
        self._next_at = now + self.interval

    def accepted(self) -> None:
        self.interval = max(self.base_interval, self.interval * 0.9)

    def slow_down(self, retry_after: float | None = None) -> None:
        self.interval = min(MAX_INTERVAL_SECONDS, self.interval * 2)
        pause = max(self.interval, float(retry_after or 0.0))
        self._next_at = time.monotonic() + min(pause, MAX_INTERVAL_SECONDS * 2)
