"""`twistd --reactor=chatrelay`: Twisted's epoll reactor, without the legacy log context per event.

Twisted's epoll reactor runs every I/O event through `log.callWithLogger`, four Python calls
and two dictionary copies that set the `system` key for messages logged with the legacy
`twisted.python.log` API. chatrelay, Autobahn (through txaio) and Twisted's own
`twisted.logger` events do not read it, and for a relay passing small chat messages those
calls were about a tenth of the CPU per message (docs/performance.md). This reactor dispatches
each event the way the epoll reactor's `_doReadOrWrite` does, with the same error handling,
minus that context: a legacy message logged during an event shows the system `-`.
"""

import select
import sys

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.main import installReactor
from twisted.python import log

_READABLE = select.EPOLLIN  # readable and nothing else: almost every event a relay sees


class RelayReactor(EPollReactor):
    """The epoll reactor, dispatching events without the legacy log context."""

    def doPoll(self, timeout):
        """Poll for events and dispatch them (EPollReactor.doPoll without `callWithLogger`)."""
        if timeout is None:
            timeout = -1  # wait until an event
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except InterruptedError:
            return
        selectables = self._selectables
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue  # removed by an earlier event of this poll
            try:
                if event == _READABLE and selectable.fileno() != -1:
                    # _doReadOrWrite's read branch, inlined for the common case; as there, a
                    # read that raised disconnects as if not in a read (a half-closeable
                    # protocol raising ConnectionDone loses the whole connection).
                    try:
                        why = selectable.doRead()
                        in_read = True
                    except BaseException:
                        why = sys.exc_info()[1]
                        in_read = False
                        log.err()
                    if why:
                        self._disconnectSelectable(selectable, why, in_read)
                else:
                    self._doReadOrWrite(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.err()  # as callWithLogger would: one selectable's bug stops nothing else

    doIteration = doPoll


def install():
    """Install RelayReactor as the global reactor (what `twistd --reactor=chatrelay` calls)."""
    installReactor(RelayReactor())
