"""`twistd --logger=chatrelay.logs.observer`: the lines twistd's own observer writes, cheaply."""

import io

import pytest

from twisted.logger import LogLevel, textFileLogObserver
from twisted.python.failure import Failure

from chatrelay.logs import TextLogObserver

NOW = 1795000000.25

SUMMARY = "127.0.0.1 [127.0.0.1:4242] closed after 0.003s; close browser 1000/peer upstream 1000/relay"


def event(log_format, **fields):
    base = dict(log_format=log_format, log_time=NOW, log_namespace="chatrelay.connection",
                log_level=LogLevel.info)
    base.update(fields)
    return base


def _broken():
    try:
        1 / 0
    except ZeroDivisionError:
        return Failure()


class Unprintable:
    def __str__(self):
        raise RuntimeError("no")


EVENTS = {
    "connection summary": event("{summary}", summary=SUMMARY, peer="127.0.0.1", up_bytes=200),
    "several lines": event("{text}", text="one\ntwo"),
    "empty text": event("{text}", text=""),
    "not a string": event("{count}", count=12),
    "missing field": event("{absent}"),
    "unprintable field": event("{thing}", thing=Unprintable()),
    "plain text": event("RelayServerFactory starting on 8080"),
    "two fields": event("{a} and {b}", a=1, b=2),
    "call syntax": event("{value()}", value=lambda: "called"),
    "conversion": event("{text!r}", text="x"),
    "own system": event("{text}", text="x", log_system="-"),
    "failure": event("{text}", text="boom", log_failure=_broken()),
    "no level, no namespace": {"log_format": "{text}", "text": "x", "log_time": NOW},
    "no time": event("{text}", text="x", log_time=None),
    "no format": {"log_time": NOW, "text": "x"},
    "bytes format": event(b"{text}", text="x"),
    "a second later": event("{summary}", summary=SUMMARY, log_time=NOW + 1),
}


@pytest.mark.parametrize("name", EVENTS)
def test_each_line_is_the_line_twistds_own_observer_writes(name):
    """Same text, same time stamp, same system, same traceback, same silence."""
    twisted_out, ours_out = io.StringIO(), io.StringIO()
    textFileLogObserver(twisted_out)(EVENTS[name])
    TextLogObserver(ours_out)(EVENTS[name])
    assert ours_out.getvalue() == twisted_out.getvalue()


def test_time_stamps_follow_the_clock_across_seconds():
    """The stamp is formatted once per second, and a new second gets a new one."""
    out = io.StringIO()
    observer = TextLogObserver(out)
    for offset in (0, 0.5, 1, 61):
        observer(event("{text}", text="x", log_time=NOW + offset))
    expected = io.StringIO()
    for offset in (0, 0.5, 1, 61):
        textFileLogObserver(expected)(event("{text}", text="x", log_time=NOW + offset))
    assert out.getvalue() == expected.getvalue()
    assert len({line[:24] for line in out.getvalue().splitlines()}) == 3
