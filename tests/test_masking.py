"""Masking keys (chatrelay/masking.py): from os.urandom, for the fast path and Autobahn alike."""

import os

import pytest

from chatrelay import fastframes, masking
from tests.memory import Harness


class CountingUrandom:
    """os.urandom, counting its calls."""

    def __init__(self):
        self.calls = []
        self.real = os.urandom

    def __call__(self, n):
        self.calls.append(n)
        return self.real(n)


def test_keys_are_read_from_the_os_a_pool_at_a_time(monkeypatch):
    """1,024 distinct 4-byte keys per 4,096-byte read; the next read only once they are used."""
    urandom = CountingUrandom()
    monkeypatch.setattr(masking.os, "urandom", urandom)
    keys = masking.MaskingKeys()
    first = [keys.key() for _ in range(1024)]
    assert urandom.calls == [4096]
    assert all(len(key) == 4 for key in first)
    assert len(set(first)) > 1000  # 1,024 random keys: a few may repeat by chance, not more
    keys.key()
    assert urandom.calls == [4096, 4096]


def test_discarded_keys_are_never_used(monkeypatch):
    """After discard (as in a forked child), the next key comes from a new read."""
    urandom = CountingUrandom()
    monkeypatch.setattr(masking.os, "urandom", urandom)
    keys = masking.MaskingKeys()
    keys.key()
    keys.discard()
    keys.key()
    assert urandom.calls == [4096, 4096]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_its_parents_keys():
    """A child forked after keys were read makes its own: the two never send the same key."""
    masking.KEYS.discard()
    masking.KEYS.key()  # the first of a fresh pool: the parent has 1,023 left
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next key, then leave without running pytest's exit
        try:
            os.write(writer, masking.KEYS.key())
        finally:
            os._exit(0)
    os.close(writer)
    try:
        child_key = os.read(reader, 4)
    finally:
        os.close(reader)
        os.waitpid(pid, 0)
    assert len(child_key) == 4
    assert child_key != masking.KEYS.key()


def test_autobahn_masks_the_relays_frames_with_these_keys(monkeypatch):
    """A frame Autobahn sends on the upstream leg (here the close the relay forwards) is masked
    with a key from masking.KEYS, not from Python's predictable `random`."""
    class FixedKeys:
        def key(self):
            return b"\x0a\x0b\x0c\x0d"

    monkeypatch.setattr(masking, "KEYS", FixedKeys())
    monkeypatch.setattr(fastframes, "_new_key", FixedKeys().key)
    harness = Harness()
    try:
        browser = harness.browser()
        upstream = harness.upstream()
        before = len(upstream.raw)
        browser.sendClose(4000, "done")
        harness.flush()
        close = bytes(upstream.raw[before:])
        assert close[0] == 0x88 and close[1] & 0x80
        assert close[2:6] == b"\x0a\x0b\x0c\x0d"
        assert upstream.closed == (True, 4000, "done")
    finally:
        harness.restore()


def test_autobahn_asks_for_nothing_but_32_bit_keys():
    """Anything else would not be a masking key: refuse it rather than answer it wrongly."""
    random = masking._AutobahnRandom()
    assert 0 <= random.getrandbits(32) < 2**32
    with pytest.raises(ValueError):
        random.getrandbits(64)


def test_the_fast_path_masks_with_these_keys(monkeypatch):
    """A whole message relayed on the fast path is masked with the next key from the pool."""
    real = os.urandom
    monkeypatch.setattr(masking.os, "urandom", lambda n: b"\x0a\x0b\x0c\x0d" * (n // 4))
    masking.KEYS.discard()
    harness = Harness()
    try:
        browser = harness.browser()
        upstream = harness.upstream()
        before = len(upstream.raw)
        browser.sendMessage(b"hello")
        harness.flush()
        sent = bytes(upstream.raw[before:])
        assert sent[:2] == b"\x81\x85" and sent[2:6] == b"\x0a\x0b\x0c\x0d"
        assert upstream.messages == [(b"hello", False)]
    finally:
        harness.restore()
        monkeypatch.setattr(masking.os, "urandom", real)
        masking.KEYS.discard()
