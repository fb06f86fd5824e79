"""`twistd chatrelay` options: defaults, validation and the relay token."""

import pytest

from twisted.python.usage import UsageError

from chatrelay.tap import DEFAULT_LISTEN, Options, makeService
from chatrelay.targets import parse_target
from chatrelay.upstream import PlatformTrustPlus


def parse(argv, environ=None):
    options = Options()
    options.environ = {"BINANCE_PROXY_TOKEN": "sekrit"} if environ is None else environ
    options.parseOptions(argv)
    return options


def test_defaults():
    """Defaults: loopback behind nginx, Binance only, 1 MiB, 10 s, platform trust."""
    options = parse([])
    assert options["listen"] == [DEFAULT_LISTEN]
    assert options["token"] == ["sekrit"]
    assert options["max-message-size"] == 1 << 20
    assert options["connect-timeout"] == 10.0
    assert options["allowlist"].allows(parse_target("wss://im.binance.com/chat/x"))
    assert not options["allowlist"].allows(parse_target("ws://127.0.0.1/chat/x"))
    assert isinstance(options["trust-root"], PlatformTrustPlus)
    assert options["trust-root"].certificates == ()


def test_repeated_options_accumulate():
    """--listen and --allow-target may be given many times; the default allowlist then goes."""
    options = parse(["--listen", "tcp:1", "--listen", "tcp:2", "--allow-target", "ws://127.0.0.1:*",
                     "--allow-target", "ws://[::1]:*"])
    assert options["listen"] == ["tcp:1", "tcp:2"]
    assert len(options["allowlist"].patterns) == 2
    assert not options["allowlist"].allows(parse_target("wss://im.binance.com/chat/x"))


@pytest.mark.parametrize(
    "argv",
    [
        ["--allow-target", "http://x.test"],
        ["--max-message-size", "0"],
        ["--max-message-size", "lots"],
        ["--connect-timeout", "-1"],
        ["--ping-interval", "-5"],
        ["--dns-ttl", "inf"],
        ["--dns-ttl", "-1"],
        ["--connect-timeout", "nan"],
        ["--close-timeout", "1e400"],
        ["--upstream-ca", "/nonexistent.pem"],
    ],
)
def test_bad_values_are_usage_errors(argv):
    """Bad values stop the relay before it starts, with a message."""
    with pytest.raises(UsageError):
        parse(argv)


def test_no_token_refuses_to_start():
    """Without $BINANCE_PROXY_TOKEN or --token-file the relay says why and does not start."""
    with pytest.raises(UsageError, match="BINANCE_PROXY_TOKEN"):
        parse([], environ={})


def test_token_file(tmp_path):
    """--token-file is read, trailing newline stripped, and wins over the environment."""
    path = tmp_path / "token"
    path.write_text("from-file\n")
    assert parse(["--token-file", str(path)])["token"] == ["from-file"]
    path.write_text("new-token\nold-token\n")
    assert parse(["--token-file", str(path)])["token"] == ["new-token", "old-token"]
    path.write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        parse(["--token-file", str(path)])


def test_upstream_ca_bundle(tmp_path):
    """Every certificate of the --upstream-ca bundle is trusted, not only the first."""
    from tests.certs import CertificateAuthority

    first, second = CertificateAuthority("A"), CertificateAuthority("B")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(first.cert_pem + second.cert_pem)
    assert len(parse(["--upstream-ca", str(bundle)])["trust-root"].certificates) == 2


def test_malformed_upstream_ca_bundle_is_a_usage_error(tmp_path):
    """A bundle whose certificate does not parse stops start-up with a message, not a traceback."""
    bundle = tmp_path / "bad.pem"
    bundle.write_bytes(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    with pytest.raises(UsageError, match="--upstream-ca"):
        parse(["--upstream-ca", str(bundle)])


def test_make_service_listens_on_each_endpoint():
    """One listener per --listen, under one service."""
    from twisted.internet.testing import MemoryReactorClock as MemoryReactor

    options = parse(["--listen", "tcp:0:interface=127.0.0.1", "--listen", r"tcp6:0:interface=\:\:1"])
    service = makeService(options, reactor=MemoryReactor())
    assert len(list(service)) == 2


def test_bad_listen_description_exits_with_a_message():
    """An endpoint string Twisted cannot parse stops start-up with a clear message."""
    from twisted.internet.testing import MemoryReactorClock as MemoryReactor

    with pytest.raises(SystemExit, match="cannot use --listen"):
        makeService(parse(["--listen", "tcp:0:interface=::1"]), reactor=MemoryReactor())


def test_several_tokens_while_rotating():
    """Every listed token opens the relay, as key or ticket signer; an unlisted one does not."""
    from chatrelay.credentials import Credentials, mint_ticket

    tokens = parse([], environ={"BINANCE_PROXY_TOKEN": "new-token, old-token"})["token"]
    credentials = Credentials(tokens)
    assert credentials.check_key("new-token") and credentials.check_key("old-token")
    assert not credentials.check_key("other")
    assert credentials.check_ticket(mint_ticket("old-token", "wss://x/chat/y"), "wss://x/chat/y")
