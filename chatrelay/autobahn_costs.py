"""Costs Autobahn charges per frame and per connection that the relay does not need to pay.

- Autobahn evaluates the arguments of its debug log calls even when debug logging is off:
  `hltype()` and `hlval()` colour strings through click on every frame sent and every chunk
  received, and `pformat()` formats the transport details of every upstream handshake.
  `defer_debug_formatting()` makes them lazy: the work is done only if a log event is
  actually formatted, with the same text.
- Every new protocol copies ~40 options (CONFIG_ATTRS) from its factory into its own __dict__
  and pformat()s them all for a debug line. `options_on_class()` gives a factory a protocol
  subclass that carries the options as class attributes, so nothing is copied or formatted,
  and each connection's instance dictionary stays small. It also makes Autobahn's own
  TCP_NODELAY work: Autobahn 26.10 calls setTcpNoDelay(self.tcpNoDelay) in connectionMade,
  before the per-instance copy exists, so with the usual factory Nagle stays on, and holds a
  relayed message's final frame for the peer's delayed ACK (about 40 ms per message).
"""

import functools
from pprint import pformat

import autobahn.twisted.websocket as _twisted_websocket
import autobahn.websocket.protocol as _websocket_protocol


class _Lazy(functools.partial):
    """Formats as `function(*args, **kwargs)` would, computed only when formatted.

    A partial, so that making one (for every helper call, formatted or not) runs no Python code.
    """

    __slots__ = ()

    def __str__(self):
        return str(self())

    def __repr__(self):
        return repr(self())

    def __format__(self, spec):
        return format(self(), spec)


def _lazy(function):
    deferred = functools.partial(_Lazy, function)
    deferred.lazy_original = function
    return deferred


def defer_debug_formatting():
    """Make Autobahn's log-argument helpers lazy in the modules the relay runs (idempotent).

    There they are only used as log-call arguments, but for pformat in Timings.__str__, which
    is given the eager pformat back.
    """
    for module, names in ((_websocket_protocol, ("hltype", "hlval", "pformat")),
                          (_twisted_websocket, ("hltype", "hlval"))):
        for name in names:
            helper = getattr(module, name)
            if not hasattr(helper, "lazy_original"):
                setattr(module, name, _lazy(helper))
    _websocket_protocol.Timings.__str__ = lambda timings: pformat(timings._timings)


def options_on_class(protocol, factory):
    """A subclass of `protocol` with `factory`'s current protocol options as class attributes.

    A function among them (perMessageCompressionAccept) is kept as a static method: as a plain
    class attribute it would be bound to the protocol instance on access.
    """
    options = {}
    for name in protocol.CONFIG_ATTRS:
        value = getattr(factory, name)
        options[name] = staticmethod(value) if callable(value) else value
    options["CONFIG_ATTRS"] = ()
    options["__module__"] = protocol.__module__
    options["__qualname__"] = protocol.__qualname__
    return type(protocol.__name__, (protocol,), options)
