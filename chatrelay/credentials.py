"""The relay key: who may use the relay."""

import hashlib
import hmac


class KeyChecker:
    """Checks the browser's `key` against the relay token in constant time."""

    def __init__(self, token):
        if not token:
            raise ValueError("the relay token is empty")
        self._digest = hashlib.sha256(token.encode("utf-8")).digest()

    def check(self, presented):
        """Whether `presented` is the relay token (time independent of where they differ)."""
        candidate = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(candidate, self._digest)
