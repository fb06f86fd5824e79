"""Python's cyclic garbage collector, set for a relay holding many long-lived connections.

A relay's heap is mostly long-lived: the start-up objects (modules, classes: ~57,000) and
each open pair's (~70 objects). CPython (3.11 to 3.13) runs a full collection, which visits
every one of them, once more than ten collections of the middle generation have run since the
last one and the objects moved into the oldest generation since then reach a quarter of what it
held after the last one. With Autobahn's keepalive, every ping made objects that lived for a
ping interval (its timer for the next ping), so with thousands of idle connections each wave
of pings met that rule: at 5,000 connections, a full collection of ~0.4 s, with the reactor
stopped, every 30 s, and half the CPU the relay spent holding them. (The relay's own keepalive,
keepalive.KeepaliveWheel, now makes no objects per ping; any other churn of objects that
outlive a few collections would meet the rule in the same way.)

While the relay runs, the start-up objects are frozen: never visited again (one that became
cyclic garbage would stay, but they live as long as the process), and a full collection waits
for more than FULL_COLLECTION_SPACING collections of the middle generation, and the quarter as
before (minutes apart under heavy connection churn, hours apart when idle). The young
collections run as often as before, and free what the relay leaves in cycles while it is
young: a finished pair is freed by reference counting, and Twisted's connector and transport of
a short upstream connection refer to each other. Those of a long-lived connection (11 objects)
are old when they become garbage, and wait for the next full collection.
"""

import gc

FULL_COLLECTION_SPACING = 1000


class CollectorSettings:
    """Freezes the start-up objects and spaces full collections; `restore` undoes both."""

    def __init__(self, spacing=FULL_COLLECTION_SPACING):
        self.spacing = spacing
        self._previous = None

    def apply(self):
        """Freeze what exists now and space full collections (the relay is starting)."""
        if self._previous is not None:
            return
        self._previous = gc.get_threshold()
        gc.collect()  # so that no garbage is frozen with the rest
        gc.freeze()
        young, middle, _ = self._previous
        gc.set_threshold(young, middle, self.spacing)

    def restore(self):
        """The collector as it was before `apply` (the relay has stopped)."""
        if self._previous is None:
            return
        gc.set_threshold(*self._previous)
        gc.unfreeze()
        self._previous = None
