"""Target parsing and the allowlist: what the relay will and will not connect to."""

import pytest

from chatrelay.targets import Allowlist, TargetError, parse_pattern, parse_target

BINANCE = "wss://im.binance.com:443/chat/c2c_abc_v2?token=TOKENx&clientType=web"


def allowed(target, patterns=()):
    return Allowlist.from_strings(patterns).allows(parse_target(target))


@pytest.mark.parametrize(
    "target",
    [
        BINANCE,
        "wss://im.binance.com/chat/c2c_abc_v2?token=T&clientType=web",
        "wss://IM.Binance.COM/chat/x",
        "wss://im.binance.com./chat/x",
        "WSS://im.binance.com/chat/x",
    ],
)
def test_default_allowlist_admits_binance_chat(target):
    """The default is Binance's chat endpoint, however its host is spelled."""
    assert allowed(target)


@pytest.mark.parametrize(
    "target",
    [
        "ws://im.binance.com/chat/x",  # not TLS
        "wss://im.binance.com:444/chat/x",  # another port
        "wss://im.binance.com/chatroom",  # path merely starting like /chat/
        "wss://im.binance.com/",
        "wss://im.binance.com/other/chat/x",
        "wss://evilim.binance.com/chat/x",  # host ending like the allowed one
        "wss://im.binance.com.evil.test/chat/x",  # host starting like it
        "wss://binance.com/chat/x",
    ],
)
def test_default_allowlist_refuses_lookalikes(target):
    """Anything else, including hosts and paths that only look similar, is refused."""
    assert not allowed(target)


@pytest.mark.parametrize(
    "target",
    [
        "",
        "not a url",
        "https://im.binance.com/chat/x",
        "http://im.binance.com/chat/x",
        "wss:im.binance.com/chat/x",
        "wss:///chat/x",
        "wss://user:pw@im.binance.com/chat/x",
        "wss://im.binance.com@evil.test/chat/x",
        "wss://im.binance.com/chat/x#frag",
        "wss://im.binance.com/chat/../admin",
        "wss://im.binance.com/chat/%2e%2e/admin",
        "wss://im.binance.com/chat/..%2Fadmin",
        "wss://im.binance.com/chat\\..\\admin",
        "wss://im.binance.com/chat/..;x",  # requested as /chat/.. by Autobahn
        "wss://im.binance.com/chat/..;/admin",  # read as /chat/../admin by some servers
        "wss://im.binance.com/chat/x;y",
        "wss://im.binance.com:0/chat/x",
        "wss://im.binance.com:99999/chat/x",
        "wss://im.binance.com:/chat/x",
        "wss://im.binance.com:443x/chat/x",
        "wss://im binance.com/chat/x",
        "wss://im.binance.com/chat/x y",
        "wss://im.bïnance.com/chat/x",
        "wss://-bad-.com/chat/x",
        "wss://127.1/chat/x",
        "wss://0x7f.0.0.1/chat/x",
        "wss://2130706433/chat/x",
        "wss://127.000.000.001/chat/x",
        "wss://[::1/chat/x",
        "wss://[fe80::1%25eth0]/chat/x",
    ],
)
def test_malformed_targets_are_refused(target):
    """Userinfo, fragments, other schemes, dot segments, numeric tricks: not a target."""
    with pytest.raises(TargetError):
        parse_target(target)


def test_target_keeps_the_exact_url_and_logs_only_its_origin():
    """The URL goes upstream untouched; only scheme://host:port is fit to log."""
    target = parse_target(BINANCE)
    assert target.url == BINANCE
    assert target.origin == "wss://im.binance.com:443"
    assert (target.host, target.port, target.path, target.secure) == ("im.binance.com", 443, "/chat/c2c_abc_v2", True)
    assert target.resource == BINANCE.split("443", 1)[1]


@pytest.mark.parametrize(
    "pattern, target, expected",
    [
        ("ws://127.0.0.1:*", "ws://127.0.0.1:8765/chat/x", True),
        ("ws://127.0.0.1:*", "ws://127.0.0.2:8765/chat/x", False),
        ("ws://127.0.0.1:*", "ws://localhost:8765/chat/x", False),  # IPs only by exact match
        ("ws://127.0.0.1:9000", "ws://127.0.0.1:9001/", False),
        ("ws://127.0.0.1", "ws://127.0.0.1:80/x", True),  # default port
        ("ws://[::1]:*/chat", "ws://[0:0::1]:1/chat/x", True),  # IPv6 canonical form
        ("ws://[::1]:*/chat", "ws://[::1]:1/chats", False),  # prefix on segment boundary
        ("ws://[::1]:*/chat", "ws://[::1]:1/chat", True),
        ("wss://example.test:*/a/b/", "wss://example.test:1/a/b/c", True),
        ("wss://example.test:*/a/b/", "ws://example.test:1/a/b/c", False),
    ],
)
def test_patterns(pattern, target, expected):
    """Ports may be '*'; hosts match exactly; path prefixes stop at segment boundaries."""
    assert allowed(target, [pattern]) is expected


@pytest.mark.parametrize(
    "pattern",
    ["http://x.test", "ws://x.test:*?q=1", "ws://u@x.test", "ws://x.test:abc", "ws://x.test/../", "ws://x.test/a;b", "x.test"],
)
def test_bad_patterns_are_refused(pattern):
    """A pattern is held to the same grammar as a target."""
    with pytest.raises(TargetError):
        parse_pattern(pattern)
