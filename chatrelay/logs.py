"""The log observer for `twistd --logger=chatrelay.logs.observer`: twistd's own text format, cheaply.

twistd's default observer formats every event from scratch: the time through two datetime
conversions and strftime, the text through string.Formatter, in pure Python. For the relay's
one line per connection that was 8% of the CPU a connection costs (docs/performance.md).
This observer writes the same lines, but formats the time once per second, and takes an event
whose format is a single field (the connection summary's "{summary}") as that field's text.
Any other event is formatted by Twisted.
"""

import math
import sys

from zope.interface import implementer

from twisted.logger import ILogObserver, formatEventAsClassicLogText, formatTime


# Events with these keys are left to Twisted: a traceback, a system of their own, a flattened format.
_PLAIN = frozenset({"log_failure", "log_system", "log_flattened"})


@implementer(ILogObserver)
class TextLogObserver:
    """Writes events to a text file as twistd's default observer does, line for line."""

    def __init__(self, out):
        self.out = out
        self._stamp = (None, None)  # (second, its time stamp), replaced whole: any thread may log
        self._fields = {}  # log_format: the one field it is made of, or None

    def __call__(self, event):
        """ILogObserver API."""
        text = self._quick_text(event)
        if text is None:
            text = formatEventAsClassicLogText(event, formatTime=self._time)
        if text:
            self.out.write(text)
            self.out.flush()

    def _quick_text(self, event):
        # The line Twisted would write, for an event it would format as one field's
        # format(value, ""); None for any other event, and for any surprise on the way.
        field = self._single_field(event.get("log_format"))
        if field is None or field not in event or not _PLAIN.isdisjoint(event):
            return None
        try:
            text = format(event[field], "")
            if not text:
                return ""
            level = event.get("log_level")
            line = "{} [{}#{}] {}".format(
                self._time(event.get("log_time")),
                event.get("log_namespace", "-"),
                "-" if level is None else level.name,
                text,
            )
        except BaseException:  # as Twisted catches it; Twisted then says what went wrong
            return None
        return line.replace("\n", "\n\t") + "\n"

    def _single_field(self, log_format):
        try:
            return self._fields[log_format]
        except KeyError:
            pass
        except TypeError:  # not hashable: not a format string Twisted would accept either
            return None
        field = None
        if isinstance(log_format, str) and log_format[:1] == "{" and log_format[-1:] == "}":
            name = log_format[1:-1]
            if name.isidentifier():
                field = name
        if len(self._fields) < 1000:  # formats are literals in the code; this is only a bound
            self._fields[log_format] = field
        return field

    def _time(self, when):
        if when.__class__ not in (float, int):  # None, or something only Twisted knows to format
            return formatTime(when)
        second = math.floor(when)
        cached_second, stamp = self._stamp
        if second != cached_second:
            stamp = formatTime(when)
            self._stamp = (second, stamp)
        return stamp


def observer():
    """The observer factory `twistd --logger` calls: log to standard output (systemd's journal)."""
    return TextLogObserver(sys.stdout)
