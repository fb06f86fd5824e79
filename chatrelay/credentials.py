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


def split_tokens(text):
    """The tokens in `text`: one per line or comma-separated (several while rotating)."""
    return [token.strip() for token in text.replace(",", "\n").splitlines() if token.strip()]


class Credentials:
    """Checks a browser's `key` or `ticket` against the relay token(s), in constant time.

    More than one token is accepted while rotating: add the new one, move the backend over,
    then drop the old one.
    """

    def __init__(self, tokens, ticket_ttl=60, clock=time.time):
        tokens = [tokens] if isinstance(tokens, str) else list(tokens)
        if not tokens or not all(tokens):
            raise ValueError("the relay token is empty")
        self._tokens = tokens
        self._key_digests = [hashlib.sha256(token.encode("utf-8")).digest() for token in tokens]
        self.ticket_ttl = ticket_ttl
        self._clock = clock

    def check_key(self, presented):
        """Whether `presented` is a relay token (time independent of where they differ)."""
        candidate = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        matches = [hmac.compare_digest(candidate, digest) for digest in self._key_digests]
        return any(matches)

    def check_ticket(self, ticket, target):
        """Whether `ticket` is a current ticket for exactly `target`."""
        expiry_text, dot, signature = ticket.partition(".")
        # isascii: str.isdigit also accepts digits such as "²", which int() refuses.
        if not dot or not expiry_text.isascii() or not expiry_text.isdigit() or len(expiry_text) > 12:
            return False
        expiry = int(expiry_text)
        now = self._clock()
        if not now < expiry <= now + self.ticket_ttl + 1:  # one second of clock rounding
            return False
        presented = signature.encode("utf-8", "surrogateescape")
        matches = [
            hmac.compare_digest(_signature(token, expiry, target).encode("ascii"), presented)
            for token in self._tokens
        ]
        return any(matches)
