"""The trims of Autobahn's per-frame and per-connection costs (chatrelay/autobahn_costs.py)."""

import inspect

import autobahn.twisted.websocket as twisted_websocket
import autobahn.websocket.protocol as websocket_protocol

from chatrelay import autobahn_costs
from chatrelay.legs import UpstreamFactory


def test_debug_helpers_format_the_same_text_lazily():
    """Autobahn's log-argument helpers are lazy once the relay is imported, and give the same text."""
    import chatrelay.legs  # noqa: F401  (applies defer_debug_formatting)

    for name in ("hltype", "hlval", "pformat"):
        helper = getattr(websocket_protocol, name)
        original = helper.lazy_original
        value = autobahn_costs.options_on_class if name == "hltype" else {"a": [1, 2]}
        assert f"{helper(value)}" == f"{original(value)}"
        assert str(helper(value)) == str(original(value))


def test_a_lazy_helper_does_its_work_only_when_formatted():
    """Calling a lazy helper costs no call of the original; formatting the result makes one."""
    calls = []

    def helper(value):
        calls.append(value)
        return f"<{value}>"

    lazy = autobahn_costs._lazy(helper)(7)
    assert calls == []
    assert (f"{lazy}", f"{lazy:>5}", repr(lazy)) == ("<7>", "  <7>", "'<7>'")
    assert calls == [7, 7, 7]


def test_protocol_options_live_on_the_class(harness):
    """Each leg reads the factory's options without holding a copy of its own."""
    leg = harness.factory.buildProtocol(None)
    factory = harness.factory
    assert leg.maxMessagePayloadSize == factory.maxMessagePayloadSize
    assert leg.echoCloseCodeReason is True
    assert "maxMessagePayloadSize" not in vars(leg)
    factory.setProtocolOptions(maxMessagePayloadSize=12345)
    assert harness.factory.buildProtocol(None).maxMessagePayloadSize == 12345


def test_a_function_option_is_not_bound_to_the_protocol():
    """perMessageCompressionAccept stays a plain function on the class."""

    class Factory:
        pass

    def accept(offers):
        return offers

    factory = Factory()
    for name in websocket_protocol.WebSocketServerProtocol.CONFIG_ATTRS:
        setattr(factory, name, None)
    factory.perMessageCompressionAccept = accept
    leg_class = autobahn_costs.options_on_class(websocket_protocol.WebSocketServerProtocol, factory)
    assert leg_class.__new__(leg_class).perMessageCompressionAccept(["offer"]) == ["offer"]


def test_upstream_factories_share_their_configuration(harness):
    """Each connection's upstream factory holds only its target and subprotocols."""
    from chatrelay.targets import parse_target

    configured = harness.factory._upstream_factory
    target = parse_target("ws://upstream.test/chat/k?token=t&clientType=web")
    one, two = configured(target, ["chat"]), configured(target, None)
    assert issubclass(configured, UpstreamFactory)
    assert one.protocol is two.protocol
    assert one.protocol.maxMessagePayloadSize == harness.factory.maxMessagePayloadSize
    assert one.protocols == ["chat"] and two.protocols == []
    assert one.resource == two.resource == "/chat/k?token=t&clientType=web"
    assert one.resource == "/chat/k?token=t&clientType=web"


def test_autobahn_opens_a_leg_as_the_relay_does_without_its_transport_details():
    """The legs' connectionMade and _onOpen skip only the transport details Autobahn's gather for
    WAMP (process and thread ids, the TLS channel binding, the peer certificate's details); an
    Autobahn whose versions do more must be read again before the relay leaves them out."""
    from chatrelay.legs import LegMixin
    from chatrelay.server import BrowserLeg

    assert set(twisted_websocket.WebSocketAdapterProtocol.connectionMade.__code__.co_names) == {
        "create_transport_details", "transport", "is_server", "_transport_details",
        "TransportDetails", "CHANNEL_FRAMING_WEBSOCKET", "channel_framing", "peer",
        "setTcpNoDelay", "tcpNoDelay", "_connectionMade", "log", "debug", "hltype",
        "connectionMade", "hlval",
    }
    assert set(twisted_websocket.WebSocketAdapterProtocol._onOpen.__code__.co_names) == {
        "_transport_details", "is_secure", "transport_channel_id", "transport", "is_server",
        "channel_id", "extract_peer_certificate", "peer_cert", "onOpen",
    }
    # Its other readers: the transport_details property, startHandshake's debug line and the
    # argument of onConnecting (which the legs do not override): none needs what is left out.
    assert inspect.getsource(websocket_protocol).count("_transport_details") == 4
    # In the Twisted adapter: the two methods replaced, and a docstring.
    assert inspect.getsource(twisted_websocket).count("_transport_details") == 10
    for leg in (UpstreamFactory.protocol, BrowserLeg):  # the legs' own come first
        assert leg.__mro__.index(LegMixin) < leg.__mro__.index(twisted_websocket.WebSocketAdapterProtocol)
