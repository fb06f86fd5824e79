"""Admission: which browser requests get an upstream connection, checked before any is opened.

Order: Origin (when --allow-origin is set), then the key or ticket, then the target's form,
then the allowlist; the first failure is the answer, so nothing about targets is told to a
caller without credentials.
"""

from functools import partial

from chatrelay import closecodes
from chatrelay.targets import TargetError, parse_target


class Refusal(Exception):
    """A browser connection the relay will close at once: close code, reason, outcome name."""

    def __init__(self, code, reason, outcome):
        super().__init__(code, reason, outcome)
        self.code = code
        self.reason = reason
        self.outcome = outcome


# Each makes a new Refusal to raise. One exception instance raised again and again would add
# every raise's frames to its traceback, and with them every connection they held.
BAD_KEY = partial(Refusal, closecodes.UNAUTHORIZED, "invalid relay key or ticket", "bad_key")
BAD_ORIGIN = partial(Refusal, closecodes.FORBIDDEN, "origin not allowed", "bad_origin")


def _single(params, name):
    values = params.get(name, [])
    return values[0] if len(values) == 1 else None


class Gate:
    """Checks Origin, credentials, the target's form and the allowlist, in that order."""

    def __init__(self, credentials, allowlist, origins=()):
        self.credentials = credentials
        self.allowlist = allowlist
        self.origins = frozenset(origin.rstrip("/").lower() for origin in origins)

    def admit(self, params, origin=None):
        """Return the Target for query `params` (name -> list of values), or raise Refusal."""
        if self.origins and (origin or "").rstrip("/").lower() not in self.origins:
            raise BAD_ORIGIN()
        raw_target = _single(params, "target")
        if not self._authorised(params, raw_target):
            raise BAD_KEY()
        if raw_target is None:
            raise Refusal(closecodes.BAD_REQUEST, "exactly one target is required", "bad_target")
        try:
            target = parse_target(raw_target)
        except TargetError as error:
            raise Refusal(closecodes.BAD_REQUEST, f"bad target: {error}", "bad_target") from None
        if not self.allowlist.allows(target):
            raise Refusal(closecodes.FORBIDDEN, "target not allowed", "forbidden_target")
        return target

    def _authorised(self, params, raw_target):
        if "key" in params and "ticket" in params:
            return False
        key = _single(params, "key")
        if key is not None:
            return self.credentials.check_key(key)
        ticket = _single(params, "ticket")
        return ticket is not None and raw_target is not None and self.credentials.check_ticket(ticket, raw_target)
