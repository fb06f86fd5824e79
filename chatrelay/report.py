"""One structured log event per browser connection, emitted when it ends.

The event carries no secret: no relay key, no target path or query (they hold the listenKey and
the listenToken), only the target's scheme://host:port.
"""

from twisted.logger import Logger

from chatrelay.relay import BROWSER, NOWHERE, UPSTREAM

log = Logger(namespace="chatrelay.connection")


class LegClose:
    """How one leg closed: the code on its wire and who sent it first."""

    __slots__ = ("code", "by")

    def __init__(self, code, by):
        self.code = code
        self.by = by

    @classmethod
    def of(cls, leg, was_clean):
        """Read the close off an Autobahn protocol after onClose.

        An upstream that completed the closing handshake but then did not drop TCP in time is
        not clean to Autobahn, but its close code was exchanged: that code is reported.
        """
        if not was_clean and not leg.wasServerConnectionDropTimeout:
            return cls(1006, "lost")
        if leg.closedByMe:
            return cls(leg.localCloseCode or 1005, "relay")
        return cls(leg.remoteCloseCode or 1005, "peer")

    def __str__(self):
        return f"{self.code}/{self.by}"


class ConnectionReport:
    """What one browser connection did: outcome, timings, traffic, close codes."""

    def __init__(self, clock, peer, tcp_peer="-", on_end=lambda report: None):
        self.clock = clock
        self.peer = peer
        self.tcp_peer = tcp_peer
        self.on_end = on_end
        self.started = clock.seconds()
        self.connect_seconds = None
        self.target = "-"
        self.outcome = None
        self.closes = {BROWSER: None, UPSTREAM: None}
        self.directions = {BROWSER: NOWHERE, UPSTREAM: NOWHERE}
        self._emitted = False

    def set_outcome(self, outcome):
        """Record why the connection ends; the first cause given wins."""
        if self.outcome is None:
            self.outcome = outcome

    def upstream_opened(self):
        """The upstream leg completed its handshake."""
        self.connect_seconds = self.clock.seconds() - self.started

    def leg_closed(self, side, close):
        """Record a leg's close; once every leg that was opened has closed, report (once)."""
        self.closes[side] = close
        done = self.closes[BROWSER] is not None and (
            self.connect_seconds is None or self.closes[UPSTREAM] is not None
        )
        if done and not self._emitted:
            self._emitted = True
            self.emit()
            self.on_end(self)

    def emit(self):
        """Log the connection's one summary event: its fields, and the line they make."""
        up = self.directions[BROWSER]
        down = self.directions[UPSTREAM]
        fields = dict(
            peer=self.peer,
            tcp_peer=self.tcp_peer,
            outcome=self.outcome or "closed",
            duration=self.clock.seconds() - self.started,
            target=self.target,
            connect="-" if self.connect_seconds is None else f"{self.connect_seconds:.3f}s",
            browser_close=str(self.closes[BROWSER]),
            upstream_close=str(self.closes[UPSTREAM] or "-"),
            up_messages=up.messages,
            up_bytes=up.bytes,
            down_messages=down.messages,
            down_bytes=down.bytes,
        )
        # Formatted here with str.format, a tenth of the cost of twisted.logger's formatter
        # for a format string with a dozen fields; observers still get every field.
        log.info("{summary}", summary=SUMMARY.format(**fields), **fields)


SUMMARY = (
    "{peer} [{tcp_peer}] {outcome} after {duration:.3f}s; target {target} opened in {connect}; "
    "close browser {browser_close} upstream {upstream_close}; "
    "browser->upstream {up_messages} msgs {up_bytes} B; "
    "upstream->browser {down_messages} msgs {down_bytes} B"
)
