"""permessage-deflate (RFC 7692) on each leg, negotiated independently; off unless asked for.

Autobahn keeps a zlib compressor and decompressor per connection once a message has passed,
and frees neither while the connection lives: about 97 KiB per compressed leg with zlib's
standard window (15 bits) and memory level (8), measured as the README says. Smaller
memory levels save memory but make the relay several times slower on incompressible data,
so the standard parameters are kept and compression is off by default (`--compression`).
"""

from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)

LEGS = ("none", "browser", "upstream", "both")


def accept_browser_offer(offers):
    """Server side: accept a browser's permessage-deflate offer."""
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def accept_upstream_response(response):
    """Client side: take the upstream's answer to the relay's offer."""
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


def browser_options(legs):
    """setProtocolOptions for the browser leg."""
    if legs in ("browser", "both"):
        return {"perMessageCompressionAccept": accept_browser_offer}
    return {}


def upstream_options(legs):
    """setProtocolOptions for the upstream leg."""
    if legs in ("upstream", "both"):
        return {
            "perMessageCompressionOffers": [PerMessageDeflateOffer(accept_max_window_bits=True)],
            "perMessageCompressionAccept": accept_upstream_response,
        }
    return {}
