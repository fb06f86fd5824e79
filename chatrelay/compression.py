"""permessage-deflate (RFC 7692) on each leg, negotiated independently.

Autobahn keeps a zlib compressor and decompressor per connection once a message has passed,
so the window and memory level below are what an idle compressed connection costs: with
9-bit windows and memory level 1, a few KiB instead of the ~300 KiB of zlib's defaults. Chat
messages are a few hundred bytes, so a larger window would not compress them much better.
"""

from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)

WINDOW_BITS = 9
MEM_LEVEL = 1
LEGS = ("none", "browser", "upstream", "both")


def accept_browser_offer(offers):
    """Server side: accept a browser's permessage-deflate offer, asking for small windows."""
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(
                offer,
                request_max_window_bits=WINDOW_BITS if offer.accept_max_window_bits else 0,
                window_bits=WINDOW_BITS,
                mem_level=MEM_LEVEL,
            )
    return None


def upstream_offers():
    """Client side: what the relay offers upstream."""
    return [PerMessageDeflateOffer(accept_max_window_bits=True, request_max_window_bits=WINDOW_BITS)]


def accept_upstream_response(response):
    """Client side: take the upstream's answer to the offer."""
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response, mem_level=MEM_LEVEL)
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
            "perMessageCompressionOffers": upstream_offers(),
            "perMessageCompressionAccept": accept_upstream_response,
        }
    return {}
