"""Shared pytest fixtures."""

import pytest


@pytest.fixture
def reactor():
    """The global reactor that pytest-twisted runs tests on."""
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def harness():
    """An in-memory relay (tests/memory.py) with default settings."""
    from tests.memory import Harness

    made = Harness()
    yield made
    made.restore()


@pytest.fixture
def make_harness():
    """Make in-memory relays with chosen settings; all are cleaned up."""
    from tests.memory import Harness

    made = []

    def make(**kwargs):
        made.append(Harness(**kwargs))
        return made[-1]

    yield make
    for each in made:
        each.restore()


@pytest.fixture
def log_events():
    """Every log event emitted during the test."""
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)
