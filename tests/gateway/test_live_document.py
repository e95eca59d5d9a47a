"""The gateway's live document is built by its housekeeping thread while order threads change what it reads."""

from __future__ import annotations

import threading
import time
from collections import deque

from keyguard.gateway.live_document import orders_since


def test_orders_are_counted_while_order_threads_append_to_and_trim_the_times() -> None:
    now = 1_000_000.0
    times: deque[float] = deque(now - 120 + i * 0.001 for i in range(150_000))  # 2 minutes at 1,000 a second
    stop = threading.Event()

    def orders_arrive() -> None:  # as Envelope.check does: append the new order, trim what left the minute
        t = now
        while not stop.is_set():
            t += 0.001
            times.append(t)
            times.popleft()

    writer = threading.Thread(target=orders_arrive)
    writer.start()
    try:
        counts = []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and len(counts) < 200:
            counts.append(orders_since(times, now, 0.0))
    finally:
        stop.set()
        writer.join()
    assert len(counts) >= 20
    # 90,000 of the first times are in the last minute; every new one is; a count is never more than the deque holds.
    assert all(90_000 <= c <= 150_001 for c in counts), counts[:5]
