"""Admission: which browser requests get an upstream connection, checked before any is opened."""

from chatrelay import closecodes
from chatrelay.targets import TargetError, parse_target


class Refusal(Exception):
    """A browser connection the relay will close at once: close code, reason, outcome name."""

    def __init__(self, code, reason, outcome):
        super().__init__(code, reason, outcome)
        self.code = code
        self.reason = reason
        self.outcome = outcome


class Gate:
    """Checks the relay key, then the target and the allowlist, in that order."""

    def __init__(self, key_checker, allowlist):
        self.key_checker = key_checker
        self.allowlist = allowlist

    def admit(self, params):
        """Return the Target for query `params` (name -> list of values), or raise Refusal."""
        keys = params.get("key", [])
        if len(keys) != 1 or not self.key_checker.check(keys[0]):
            raise Refusal(closecodes.UNAUTHORIZED, "invalid relay key", "bad_key")
        targets = params.get("target", [])
        if len(targets) != 1:
            raise Refusal(closecodes.BAD_REQUEST, "exactly one target is required", "bad_target")
        try:
            target = parse_target(targets[0])
        except TargetError as error:
            raise Refusal(closecodes.BAD_REQUEST, f"bad target: {error}", "bad_target") from None
        if not self.allowlist.allows(target):
            raise Refusal(closecodes.FORBIDDEN, "target not allowed", "forbidden_target")
        return target
