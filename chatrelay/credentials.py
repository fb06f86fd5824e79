"""Who may use the relay: the relay key itself, or a short-lived ticket minted with it.

A ticket is `EXPIRY.SIGNATURE`: EXPIRY in Unix seconds, SIGNATURE the unpadded base64url
HMAC-SHA256, keyed by the relay token, of "chatrelay-ticket-v1\\n{EXPIRY}\\n{TARGET}" where
TARGET is the exact target URL. It is good for that target only, until EXPIRY, and never for
longer than the relay's --ticket-ttl from now (so a leaked token cannot mint long-lived ones
that this relay would honour).
"""

import base64
import hashlib
import hmac
import time

TICKET_CONTEXT = b"chatrelay-ticket-v1"


def _signature(token, expiry, target):
    message = b"\n".join([TICKET_CONTEXT, str(expiry).encode(), target.encode("utf-8")])
    digest = hmac.new(token.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mint_ticket(token, target, ttl=60, now=None):
    """A ticket for `target`, valid for `ttl` seconds from `now`."""
    expiry = int((time.time() if now is None else now) + ttl)
    return f"{expiry}.{_signature(token, expiry, target)}"


class Credentials:
    """Checks a browser's `key` or `ticket` against the relay token, in constant time."""

    def __init__(self, token, ticket_ttl=60, clock=time.time):
        if not token:
            raise ValueError("the relay token is empty")
        self._token = token
        self._key_digest = hashlib.sha256(token.encode("utf-8")).digest()
        self.ticket_ttl = ticket_ttl
        self._clock = clock

    def check_key(self, presented):
        """Whether `presented` is the relay token (time independent of where they differ)."""
        candidate = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(candidate, self._key_digest)

    def check_ticket(self, ticket, target):
        """Whether `ticket` is a current ticket for exactly `target`."""
        expiry_text, dot, signature = ticket.partition(".")
        if not dot or not expiry_text.isdigit() or len(expiry_text) > 12:
            return False
        expiry = int(expiry_text)
        now = self._clock()
        if not now < expiry <= now + self.ticket_ttl + 1:  # one second of clock rounding
            return False
        expected = _signature(self._token, expiry, target)
        return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "surrogateescape"))
