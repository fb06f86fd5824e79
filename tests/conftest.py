"""Shared pytest fixtures, and a time limit on every test that waits in the reactor."""

import functools
import inspect

import pytest

from twisted.internet import defer

TEST_WAIT = 60  # seconds a test may wait in the reactor; the longest takes about 5


def pytest_collection_modifyitems(items):
    """Bound every plain test function that returns a Deferred or a coroutine (inlineCallbacks
    and async tests): past TEST_WAIT it is cancelled, and fails with TimeoutError, whatever it
    waits for (unless it catches the cancellation itself)."""
    for item in items:
        if type(item) is pytest.Function:
            item.obj = _bounded(item.obj)


def _bounded(test):
    @functools.wraps(test)
    def bounded(*args, **kwargs):
        result = test(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = defer.ensureDeferred(result)
        if isinstance(result, defer.Deferred):
            from twisted.internet import reactor

            result.addTimeout(TEST_WAIT, reactor)
        return result

    return bounded


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
    for each in reversed(made):  # each restores what the one before it installed
        each.restore()


@pytest.fixture
def log_events():
    """Every log event emitted during the test."""
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)
