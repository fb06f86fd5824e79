"""Close codes: what the relay sends, and which received codes may be forwarded on the wire."""

from autobahn.websocket.protocol import WebSocketProtocol

NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
INVALID_PAYLOAD = 1007
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
BAD_GATEWAY = 1014

# The relay's own refusals (application range, readable by browser JavaScript).
BAD_REQUEST = 4400
UNAUTHORIZED = 4401
FORBIDDEN = 4403

_RELAY_CODES = frozenset({BAD_REQUEST, UNAUTHORIZED, FORBIDDEN})


def metric_label(code):
    """The code as a metric label: registered and relay codes as themselves, other
    application codes by range ("3xxx", "4xxx"), so peers cannot mint label values.
    """
    if code is None or code < 3000 or code in _RELAY_CODES:
        return str(code)
    return f"{code // 1000}xxx"


def forwardable(code):
    """Whether a received close code is legal on the wire, so it may be forwarded unchanged.

    No code at all (an empty close) is legal; so are 3000-4999 and the registered codes
    Autobahn accepts (1000-1003, 1007-1013, plus 1014 once `allow_receiving_1014` ran).
    1004-1006, 1015 and other unassigned codes never appear on the wire (RFC 6455 7.4).
    """
    return (
        code is None
        or 3000 <= code <= 4999
        or code in WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED
    )


def code_after_failure(code, toward_browser):
    """The code for the other leg when one leg failed with `code` (a violation by its peer).

    A message the other leg has partly received (1007, 1009) keeps its code; anything
    else is, for the browser, a failure of the upstream (1014), and for the upstream,
    a browser that went away (1001).
    """
    if code in (INVALID_PAYLOAD, MESSAGE_TOO_BIG):
        return code
    return BAD_GATEWAY if toward_browser else GOING_AWAY


def allow_receiving_1014():
    """Let Autobahn accept a received 1014 (Bad Gateway), which its allow-list lacks.

    The list is read through the base class (crossbario/autobahn-python#1642), so it is
    patched there, once.
    """
    if BAD_GATEWAY not in WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED:
        WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED.append(BAD_GATEWAY)
