"""The relay proper: one browser leg joined to one upstream leg.

Legs are Autobahn protocols (see legs.py); this module only calls the parts of their interface
named below, so it can be read, and tested, without a network:

    send_whole(bytes, is_binary)                                    a message that arrived whole
    beginMessage(isBinary), sendMessageFrame(bytes), endMessage()   any other, frame by frame
    sendPing(bytes), sendPong(bytes)                                pass-through control frames
    sendCloseFrame(code, reasonUtf8)                                a close with any code
    answer_close(answer)                                            reply to the close it deferred
    leg_open(), transport.pauseProducing(), transport.resumeProducing()
    registerProducer(producer, streaming), unregisterProducer()
    compressed(), start_fast_frames(sink), stop_fast_frames()      the fast path (fastframes.py)
    start_keepalive(wheel)                                         the keepalive (keepalive.py)

Closing is end to end: a close received on one leg is forwarded to the other, and the first
leg's reply waits until the other side answers (or `close_timeout` passes, or it drops). The
reply carries the other side's answer, as a direct connection would have shown it; only
without an answer does the first leg echo its own close. When both sides close at once, each
thus gets the other's code.
"""

from zope.interface import implementer

from twisted.internet.interfaces import IPushProducer

from autobahn.util import encode_truncate

from chatrelay import closecodes

BROWSER = "browser"
UPSTREAM = "upstream"


class Direction:
    """Messages flowing from one leg to the other, with counters.

    A message that arrives whole (one frame, read at once: the usual chat message) is sent on
    as one frame; any other is sent on frame by frame as its chunks arrive, so a large
    message is never held in memory.
    """

    __slots__ = ("sink", "open", "messages", "bytes", "_binary", "_started")

    def __init__(self, sink):
        self.sink = sink
        self.open = sink is not None
        self.messages = 0
        self.bytes = 0
        self._binary = False
        self._started = False  # True once a frame of the message went out; None: sent whole

    def begin(self, is_binary):
        """A message starts on the source leg (counted once something of it is sent on: a
        message refused before that, too large or not UTF-8, was not relayed)."""
        self._binary = is_binary
        self._started = False

    def whole(self, payload):
        """The complete message arrived at once: send it on as one frame."""
        if self.open and self.sink.leg_open():
            self.messages += 1
            self.bytes += len(payload)
            self.sink.send_whole(payload, self._binary)
        self._started = None

    def data(self, chunk):
        """A chunk of the message arrived: send it on as one complete frame."""
        if self.open and chunk:
            self.bytes += len(chunk)
            if not self._started:
                self.messages += 1
                self.sink.beginMessage(isBinary=self._binary)
                self._started = True
            self.sink.sendMessageFrame(chunk)

    def end(self):
        """The message is complete on the source leg."""
        if self.open and self._started is not None:
            if self._started:
                self.sink.endMessage()
            elif self.sink.leg_open():
                self.messages += 1
                self.sink.send_whole(b"", self._binary)  # an empty message: one frame
        self._started = False

    def ping(self, payload):
        """Pass a ping through."""
        if self.open:
            self.sink.sendPing(payload)

    def pong(self, payload):
        """Pass a pong through."""
        if self.open:
            self.sink.sendPong(payload)


class Nowhere:
    """Where a leg's messages go before it is joined (or when it never is): nowhere, uncounted."""

    messages = bytes = 0

    def begin(self, is_binary):
        """Drop the message."""

    def data(self, chunk):
        """Drop the chunk."""

    def whole(self, payload):
        """Drop the message."""

    def end(self):
        """Nothing to end."""

    def ping(self, payload):
        """Drop the ping: no pong comes back."""

    def pong(self, payload):
        """Drop the pong."""


NOWHERE = Nowhere()


@implementer(IPushProducer)
class ReadValve:
    """Registered on one leg's transport: while its send buffer is full, stop reading the other leg.

    Not the other leg's transport itself: Twisted calls stopProducing (loseConnection) on the
    producer when the consumer goes away, which would drop that leg without a close code.
    """

    def __init__(self, leg):
        self.leg = leg

    def pauseProducing(self):
        """Stop reading from the leg."""
        if not self.leg.reading_paused:
            self.leg.reading_paused = True
            self.leg.transport.pauseProducing()

    def resumeProducing(self):
        """Read from the leg again."""
        if self.leg.reading_paused:
            self.leg.reading_paused = False
            self.leg.transport.resumeProducing()

    stopProducing = resumeProducing


class Relay:
    """Joins a browser leg to its upstream leg: forwarding, flow control and closing."""

    def __init__(self, clock, close_timeout, report, idle_timeout=0, keepalive=None):
        self.clock = clock
        self.close_timeout = close_timeout
        self.report = report
        self.idle_timeout = idle_timeout
        self.keepalive = keepalive  # a KeepaliveWheel, for both legs once joined
        self._idle_check = None
        self._traffic_seen = -1
        self.browser = None
        self.upstream = None
        self.closing = False
        self._directions = ()
        self._awaiting_answer = None
        self._answer_timer = None

    def join(self, browser, upstream):
        """Both legs are open: start relaying between them."""
        self.browser, self.upstream = browser, upstream
        upstream.relay = self
        browser.outbound = Direction(upstream)
        upstream.outbound = Direction(browser)
        self._directions = (browser.outbound, upstream.outbound)
        self.report.directions = {BROWSER: browser.outbound, UPSTREAM: upstream.outbound}
        browser.registerProducer(ReadValve(upstream), True)
        upstream.registerProducer(ReadValve(browser), True)
        if not (browser.compressed() or upstream.compressed()):
            browser.start_fast_frames(upstream)
            upstream.start_fast_frames(browser)
        if self.keepalive is not None:
            browser.start_keepalive(self.keepalive)
            upstream.start_keepalive(self.keepalive)
        if self.idle_timeout:
            self._check_idle()

    def _check_idle(self):
        # One timer per pair, never touched per message: idle means no message either way
        # between two checks, so an idle pair is closed after one to two idle_timeouts.
        traffic = sum(direction.messages for direction in self._directions)
        if traffic == self._traffic_seen:
            self._idle_check = None
            self.close_both("idle", closecodes.GOING_AWAY, b"idle timeout")
        else:
            self._traffic_seen = traffic
            self._idle_check = self.clock.callLater(self.idle_timeout, self._check_idle)

    def other(self, leg):
        """The leg on the other side of `leg`."""
        return self.upstream if leg is self.browser else self.browser

    def side(self, leg):
        """BROWSER or UPSTREAM."""
        return BROWSER if leg is self.browser else UPSTREAM

    def close_received(self, leg, code, reason):
        """`leg`'s peer started a closing handshake; return True when its answer is deferred."""
        other = self.other(leg)
        if self.closing or other is None or not other.leg_open():
            return False
        self._begin_closing(f"{self.side(leg)}_closed")
        other.sendCloseFrame(code, reason)
        self._awaiting_answer = leg
        self._answer_timer = self.clock.callLater(self.close_timeout, self._answer)
        return True

    def close_answered(self, leg, answer):
        """`leg`'s peer answered a close with `answer`, its (code, reason), or None if that
        close was invalid: if it was one we forwarded, answer the original with it (or echo)."""
        if self._awaiting_answer is not None and self._awaiting_answer is not leg:
            self._answer(answer)

    def failed(self, leg, code, reason):
        """The relay is failing `leg` with `code` (its peer broke the protocol or a limit)."""
        if self.closing:
            return
        self._begin_closing(f"{self.side(leg)}_error")
        other = self.other(leg)
        if other is not None:
            toward_browser = other is self.browser
            mapped = closecodes.code_after_failure(code, toward_browser)
            other.sendCloseFrame(mapped, encode_truncate(reason, 123))

    def lost(self, leg):
        """`leg`'s connection is gone; the other leg must not be left open."""
        if self.browser is None:
            return  # never joined: the upstream attempt handles its own end
        if self._awaiting_answer is leg:
            self._cancel_answer()
        elif self._awaiting_answer is not None:
            self._answer()
        if not self.closing:
            self._begin_closing(f"{self.side(leg)}_lost")
            if leg is self.upstream:
                self.browser.sendCloseFrame(closecodes.BAD_GATEWAY, b"upstream connection lost")
            else:
                self.upstream.sendCloseFrame(closecodes.GOING_AWAY, b"browser went away")

    def shut_down(self):
        """The relay is stopping: close both legs with 1001."""
        self.close_both("shutdown", closecodes.GOING_AWAY, b"relay shutting down")

    def close_both(self, outcome, code, reason):
        """The relay itself ends the pair: close both legs with `code`."""
        if self._awaiting_answer is not None:
            self._answer()
        if not self.closing:
            self._begin_closing(outcome)
            for leg in (self.browser, self.upstream):
                if leg is not None:
                    leg.sendCloseFrame(code, reason)

    def _begin_closing(self, outcome):
        self.closing = True
        for leg in (self.browser, self.upstream):
            if leg is not None:
                leg.stop_fast_frames()
        if self._idle_check is not None and self._idle_check.active():
            self._idle_check.cancel()
        self.report.set_outcome(outcome)
        for direction in self._directions:
            direction.open = False
        # Flow control ends here: closing must not wait on a paused producer, and each leg
        # must read on to see its peer's close reply.
        for leg in (self.browser, self.upstream):
            if leg is not None and leg.transport is not None:
                leg.unregisterProducer()
                ReadValve(leg).resumeProducing()

    def _answer(self, answer=None):
        leg = self._awaiting_answer
        self._cancel_answer()
        if leg is not None:
            leg.answer_close(answer)

    def _cancel_answer(self):
        self._awaiting_answer = None
        if self._answer_timer is not None and self._answer_timer.active():
            self._answer_timer.cancel()
        self._answer_timer = None
