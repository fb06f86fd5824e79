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


class OwnFormat:
    def __str__(self):
        return "str"

    def __format__(self, spec):
        return "formatted"


class Interrupting:
    def __format__(self, spec):
        raise KeyboardInterrupt


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
    "own __format__": event("{thing}", thing=OwnFormat()),
    "interrupted formatting": event("{thing}", thing=Interrupting()),
    "namespace over lines": event("{text}", text="x", log_namespace="a\nb"),
    "not a level": event("{text}", text="x", log_level="info"),
    "before 1970": event("{text}", text="x", log_time=-0.5),
    "integer time": event("{text}", text="x", log_time=1795000000),
    "unicode": event("{text}", text="caf\u00e9 \u2013 \ud83d\ude00"),
}


@pytest.mark.parametrize("name", EVENTS)
def test_each_line_is_the_line_twistds_own_observer_writes(name):
    """Same text, same time stamp, same system, same traceback, same silence."""
    assert outcome(TextLogObserver, EVENTS[name]) == outcome(textFileLogObserver, EVENTS[name])


def outcome(make_observer, event):
    """What the observer writes, or the exception it raises (which the log publisher reports)."""
    out = io.StringIO()
    try:
        make_observer(out)(event)
    except Exception as error:
        return type(error)
    return out.getvalue()


@pytest.mark.parametrize("times", [(NOW, NOW + 0.5, NOW + 1, NOW + 61), (0.5, -0.5, -1.5, -1.0)])
def test_time_stamps_follow_the_clock_across_seconds(times):
    """The stamp is formatted once per second, and a new second gets a new one."""
    out, expected = io.StringIO(), io.StringIO()
    observer = TextLogObserver(out)
    for when in times:
        observer(event("{text}", text="x", log_time=when))
        textFileLogObserver(expected)(event("{text}", text="x", log_time=when))
    assert out.getvalue() == expected.getvalue()
    assert len({line[:24] for line in out.getvalue().splitlines()}) == 3
