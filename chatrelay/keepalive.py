"""One timer for the keepalive of every leg: the relay's pings, and the deadlines of their pongs.

A relay holds thousands of mostly idle legs, each pinged every `--ping-interval`. Autobahn's
keepalive gives each leg a timer of its own for each ping and each pong it waits for: a call
object and a closure made per ping, a `list.remove` over the timer's bucket to cancel one, and
objects that live for a whole interval, which bring the garbage collector round.
`KeepaliveWheel` keeps the legs due in the same tick in one set, with one reactor call per tick:
making a leg due, or no longer due, allocates nothing per leg.
"""

import math

from twisted.logger import Logger


class KeepaliveWheel:
    """Calls `keepalive_due()` on each leg whose time has come, in ticks of 1/`ticks_per_second`
    seconds: a leg is never called before its time, and at most one tick after it."""

    log = Logger()

    def __init__(self, clock, interval, timeout, ticks_per_second=5):
        self.clock = clock
        self.interval = interval  # between the pings on a leg (0: no pings)
        self.timeout = timeout  # for each ping's pong (0: no limit)
        self._per_second = ticks_per_second
        self._ticks = {}  # tick -> (its reactor call, the legs due then)
        self._tick_of = {}  # leg -> the tick it is due at

    def call_after(self, leg, delay):
        """Make `leg` due `delay` seconds from now (instead of when it was due, if it was)."""
        self.cancel(leg)
        now = self.clock.seconds()
        tick = math.ceil((now + delay) * self._per_second)
        entry = self._ticks.get(tick)
        if entry is None:
            call = self.clock.callLater(max(0.0, tick / self._per_second - now), self._tick, tick)
            entry = self._ticks[tick] = (call, set())
        entry[1].add(leg)
        self._tick_of[leg] = tick

    def cancel(self, leg):
        """`leg` is no longer due (nothing happens if it was not)."""
        tick = self._tick_of.pop(leg, None)
        if tick is None:
            return
        entry = self._ticks.get(tick)
        if entry is None:
            return  # its tick is running now
        call, legs = entry
        legs.discard(leg)
        if not legs:
            del self._ticks[tick]
            call.cancel()

    def due(self, leg):
        """Whether `leg` is due at some time."""
        return leg in self._tick_of

    def __len__(self):
        return len(self._tick_of)

    def _tick(self, tick):
        _call, legs = self._ticks.pop(tick)
        tick_of = self._tick_of
        for leg in legs:
            # A leg made due again, or no longer, by an earlier leg's call in this tick is skipped.
            if tick_of.get(leg) != tick:
                continue
            del tick_of[leg]
            try:
                leg.keepalive_due()
            except Exception:
                self.log.failure("keepalive of a leg failed")
