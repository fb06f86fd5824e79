"""Masking keys for the frames the relay sends as a WebSocket client (on the upstream leg).

RFC 6455 (5.3, 10.3) requires a client's masking keys to be unpredictable, "derived from a
strong source of entropy", so that a script choosing a frame's payload cannot choose the bytes
an intermediary sees on the wire. Autobahn makes its keys with `random.getrandbits` (a Mersenne
Twister, predictable from its past output; its issue 758 argues a non-browser client's payloads
are its own). The relay's are not: every message a browser sends, the relay masks and sends on.
So every key, the fast path's and Autobahn's, comes from `os.urandom`, read 1,024 keys at a time.
"""

import os

import autobahn.websocket.protocol as _websocket_protocol


class MaskingKeys:
    """Fresh 4-byte masking keys from the operating system's random source."""

    __slots__ = ("pool_size", "_pool", "_at")

    def __init__(self, pool_size=4096):
        self.pool_size = pool_size
        self.discard()

    def key(self):
        """The next unused key (4 bytes)."""
        at = self._at
        if at == len(self._pool):
            self._pool = os.urandom(self.pool_size)
            at = 0
        self._at = at + 4
        return self._pool[at:at + 4]

    def discard(self):
        """Forget the keys read but not used (a forked child must not reuse its parent's)."""
        self._pool = b""
        self._at = 0


KEYS = MaskingKeys()
os.register_at_fork(after_in_child=KEYS.discard)


class _AutobahnRandom:
    """What Autobahn's frame code calls on its `random` module, answered from KEYS."""

    @staticmethod
    def getrandbits(bits):
        """A masking key as Autobahn asks for it: 32 bits, as an int."""
        if bits != 32:
            raise ValueError("Autobahn asks only for 32-bit masking keys")
        return int.from_bytes(KEYS.key(), "big")

    @staticmethod
    def seed(*args, **kwargs):
        """Nothing to seed: every key comes from os.urandom."""


def use_strong_keys_in_autobahn():
    """Make Autobahn's own masking keys (close frames, pings, streamed messages) come from
    KEYS too (idempotent). Its frame code uses its `random` module for nothing else."""
    _websocket_protocol.random = _AutobahnRandom()
