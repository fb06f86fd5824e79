"""The garbage collector settings the relay runs with (chatrelay/collector.py)."""

import gc
import sys

import pytest

from chatrelay.collector import CollectorSettings
from chatrelay.service import RelayService


@pytest.fixture
def settings():
    """CollectorSettings (full collections spaced by 500) undone after the test, whatever it did."""
    before = gc.get_threshold()
    made = CollectorSettings(spacing=500)
    yield made
    made.restore()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def full_collections_while(work):
    """How many full collections the collector runs while `work()` runs."""
    full = []

    def count(phase, info):
        if phase == "start" and info["generation"] == 2:
            full.append(info)

    gc.callbacks.append(count)
    try:
        work()
    finally:
        gc.callbacks.remove(count)
    return len(full)


def a_wave_of_long_lived_objects():
    """As a wave of Autobahn's keepalive timers made them, or a wave of new connections after a
    restart does: objects that outlive many young collections, as many as the collector tracks
    already, frozen or not (and enough for twenty collections of the middle generation)."""
    tracked = len(gc.get_objects()) + gc.get_freeze_count()
    return [[] for _ in range(max(tracked, 20 * 10 * gc.get_threshold()[0]))]


def test_applied_settings_freeze_start_up_objects_and_space_full_collections(settings):
    """While applied, what existed is frozen and only full collections are spaced; then undone."""
    young, middle, _ = gc.get_threshold()
    settings.apply()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (young, middle, 500)
    settings.apply()  # a second apply keeps the first restore point
    settings.restore()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[2] != 500


def test_the_service_applies_them_while_it_runs(settings, harness):
    """RelayService applies its collector settings when it starts, and undoes them once every
    connection is closed at shutdown (not before: closing thousands makes garbage too)."""
    service = RelayService(harness.clock, harness.factory, collector=settings)
    service.startService()
    assert gc.get_threshold()[2] == 500 and gc.get_freeze_count() > 0
    harness.browser()
    harness.upstream()
    stopped = []
    service.stopService().addBoth(stopped.append)
    assert not stopped  # the pair's closes are sent, not yet answered
    assert gc.get_threshold()[2] == 500
    harness.flush()
    assert stopped == [None]
    assert gc.get_threshold()[2] != 500 and gc.get_freeze_count() == 0


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="CPython 3.14's collector is incremental")
def test_long_lived_objects_bring_no_full_collection_while_applied(settings):
    """With Python's own settings, a wave of long-lived objects (the heap again) brings a full
    collection, which visits every object the relay holds; with the relay's, it does not."""
    assert gc.get_threshold()[2] == 10  # Python's default
    gc.collect()
    assert full_collections_while(a_wave_of_long_lived_objects) >= 1
    settings.apply()
    assert full_collections_while(a_wave_of_long_lived_objects) == 0
