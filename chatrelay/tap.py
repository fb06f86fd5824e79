"""`twistd chatrelay`: command-line options and the service they describe."""

import math
import os

import txaio
from OpenSSL import crypto

from twisted.application import strports
from twisted.logger import Logger
from twisted.python import usage

import autobahn
import autobahn.websocket

from chatrelay import __version__
from chatrelay.clients import ClientAddresses, parse_networks
from chatrelay.collector import CollectorSettings
from chatrelay.compression import LEGS
from chatrelay.credentials import Credentials, split_tokens
from chatrelay.gate import Gate
from chatrelay.http import Routes
from chatrelay.legs import LegSettings
from chatrelay.server import RelayServerFactory
from chatrelay.limits import Limits
from chatrelay.metrics import RelayMetrics
from chatrelay.service import RelayService
from chatrelay.static import install_static
from chatrelay.status import StatusPages
from chatrelay.targets import Allowlist, TargetError, parse_pattern
from chatrelay.upstream import PlatformTrustPlus

log = Logger(namespace="chatrelay")

DEFAULT_LISTEN = r"tcp:8080:interface=127.0.0.1"
TOKEN_ENVIRONMENT_VARIABLE = "BINANCE_PROXY_TOKEN"


def _number(kind, minimum=0, inclusive=False):
    def coerce(text):
        value = kind(text)
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, not {text}")
        if value < minimum or (value == minimum and not inclusive):
            bound = "at least" if inclusive else "more than"
            raise ValueError(f"must be {bound} {minimum}, not {text}")
        return value

    coerce.coerceDoc = f"A {kind.__name__} {'>=' if inclusive else '>'} {minimum}."
    return coerce


def _one_of(choices):
    def coerce(text):
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {text}")
        return text

    coerce.coerceDoc = f"One of {', '.join(choices)}."
    return coerce


_positive_int = _number(int)
_positive_float = _number(float)
_seconds_or_off = _number(float, inclusive=True)


class Options(usage.Options):
    """Options for `twistd chatrelay`."""

    synopsis = "[--listen ENDPOINT]... [--allow-target PATTERN]... [options]"
    longdesc = (
        "Relays each browser WebSocket (ws(s)://HOST/ANY/PATH?key=TOKEN&target=URL) to its own "
        "upstream WebSocket at the URL-encoded target, which must match the allowlist. The relay "
        f"token comes from ${TOKEN_ENVIRONMENT_VARIABLE} or --token-file."
    )
    optFlags = [
        ["demo", None, "Also run a fake Binance chat in-process and serve a demo page at /demo/."],
    ]
    optParameters = [
        ["token-file", None, None, "File holding the relay token (instead of the environment)."],
        ["max-message-size", None, 1 << 20, "Largest message relayed, in bytes (1009 beyond).", _positive_int],
        ["connect-timeout", None, 10.0, "Seconds to open the upstream leg (1014 beyond).", _positive_float],
        ["upstream-ca", None, None, "PEM bundle trusted for upstream TLS besides the platform's CAs."],
        ["close-timeout", None, 5.0, "Seconds to wait for a closing handshake's answer.", _positive_float],
        ["ping-interval", None, 30.0, "Seconds between keepalive pings on each leg (0: none).", _seconds_or_off],
        ["ping-timeout", None, 30.0, "Seconds to wait for a keepalive pong (0: no limit).", _seconds_or_off],
        ["compression", None, "none", "permessage-deflate on which legs: none, browser, upstream or both.",
         _one_of(LEGS)],
        ["ticket-ttl", None, 60.0, "Longest validity, in seconds, of a ?ticket= accepted.", _positive_float],
        ["max-connections", None, 10000, "Browser connections at most (1013 beyond).", _positive_int],
        ["max-connections-per-ip", None, 32, "Browser connections per client address (1013 beyond).",
         _positive_int],
        ["handshake-timeout", None, 10.0, "Seconds for a client to send its request head.", _positive_float],
        ["idle-timeout", None, 300.0, "Close a pair with 1001 after this long without a message (0: never).",
         _seconds_or_off],
        ["dns-ttl", None, 30.0, "Seconds to reuse an upstream host name's addresses (0: look up for each "
         "connection; lookups in flight are shared either way).", _seconds_or_off],
        ["max-request-bytes", None, 8192, "Largest request head (request line, headers, query) in bytes.",
         _positive_int],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []
        self["allow-target"] = []
        self["allow-origin"] = []
        self["trusted-proxy"] = []
        self["metrics-allow"] = []
        self.environ = os.environ

    def opt_listen(self, description):
        """Listen on a Twisted endpoint, e.g. tcp:8080:interface=127.0.0.1 or
        ssl:8443:privateKey=key.pem:certKey=cert.pem (repeatable)."""
        self["listen"].append(description)

    def opt_allow_target(self, pattern):
        """Allow upstream targets matching scheme://host[:port|:*][/path-prefix] (repeatable;
        default wss://im.binance.com:443/chat/)."""
        try:
            self["allow-target"].append(parse_pattern(pattern))
        except TargetError as error:
            raise usage.UsageError(f"--allow-target {pattern}: {error}")

    def opt_allow_origin(self, origin):
        """Accept browsers only from this Origin, e.g. https://app.example.com (repeatable;
        default: any)."""
        self["allow-origin"].append(origin)

    def opt_trusted_proxy(self, network):
        """Trust X-Forwarded-For from this address or CIDR block, or from peers on a Unix socket
        with `unix` (repeatable; default: none)."""
        self._add_network("trusted-proxy", network)

    def opt_metrics_allow(self, network):
        """Serve /metrics to this address or CIDR block, or `unix` (repeatable; default 127.0.0.1
        and ::1)."""
        self._add_network("metrics-allow", network)

    def _add_network(self, key, network):
        try:
            parse_networks([network])
        except ValueError as error:
            raise usage.UsageError(f"--{key} {network}: {error}")
        self[key].append(network)

    def postOptions(self):
        """Apply defaults, read the relay token and the upstream CA bundle."""
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        if not self["metrics-allow"]:
            self["metrics-allow"] = ["127.0.0.1", "::1"]
        self["allowlist"] = (
            Allowlist(self["allow-target"]) if self["allow-target"] else Allowlist.from_strings(())
        )
        self["token"] = self._read_token()
        try:
            self["trust-root"] = (
                PlatformTrustPlus.from_pem_file(self["upstream-ca"]) if self["upstream-ca"] else PlatformTrustPlus()
            )
        except (OSError, ValueError, crypto.Error) as error:
            raise usage.UsageError(f"--upstream-ca: {error}")

    def _read_token(self):
        if self["token-file"] is not None:
            try:
                with open(self["token-file"], encoding="utf-8") as token_file:
                    tokens = split_tokens(token_file.read())
            except OSError as error:
                raise usage.UsageError(f"--token-file: {error.strerror}: {self['token-file']}")
            if not tokens:
                raise usage.UsageError(f"--token-file: {self['token-file']} is empty")
            return tokens
        tokens = split_tokens(self.environ.get(TOKEN_ENVIRONMENT_VARIABLE, ""))
        if not tokens:
            raise usage.UsageError(f"no relay token: set {TOKEN_ENVIRONMENT_VARIABLE} or pass --token-file")
        return tokens


def make_factory(config, reactor):
    """The relay's server factory, configured from the options."""
    settings = LegSettings(
        max_message_size=config["max-message-size"],
        close_timeout=config["close-timeout"],
        ping_interval=config["ping-interval"],
        ping_timeout=config["ping-timeout"],
        compression=config["compression"],
    )
    limits = Limits(
        max_connections=config["max-connections"],
        max_per_client=config["max-connections-per-ip"],
        handshake_timeout=config["handshake-timeout"],
        idle_timeout=config["idle-timeout"],
        max_head_bytes=config["max-request-bytes"],
    )
    credentials = Credentials(config["token"], ticket_ttl=config["ticket-ttl"], clock=reactor.seconds)
    return RelayServerFactory(
        reactor,
        Gate(credentials, config["allowlist"], config["allow-origin"]),
        settings,
        connect_timeout=config["connect-timeout"],
        trust_root=config["trust-root"],
        limits=limits,
        clients=ClientAddresses(config["trusted-proxy"]),
        routes=Routes(),
        metrics=RelayMetrics(),
    )


def makeService(config, reactor=None):
    """Build the relay service: one listener per --listen, one factory for all."""
    if reactor is None:
        from twisted.internet import reactor
    txaio.use_twisted()
    txaio.set_global_log_level("info")
    factory = make_factory(config, reactor)
    status = StatusPages(factory, config["metrics-allow"])
    status.install(factory.routes)
    install_static(factory.routes)
    service = RelayService(reactor, factory, status, dns_ttl=config["dns-ttl"], collector=CollectorSettings())
    if config["demo"]:
        from chatrelay.demo import install_demo

        install_demo(service, factory, config)
    for description in config["listen"]:
        try:
            listener = strports.service(description, factory, reactor=reactor)
        except (ValueError, KeyError, TypeError, OSError) as error:
            raise SystemExit(f"chatrelay: cannot use --listen {description}: {error}")
        listener.setServiceParent(service)
    log.info(
        "chatrelay {version} (autobahn {autobahn}, NVX {nvx}) listening on {listen}; "
        "allowed targets: {allowlist}; compression: {compression}",
        version=__version__,
        autobahn=autobahn.__version__,
        nvx="on" if autobahn.websocket.USES_NVX else "OFF",
        listen=", ".join(config["listen"]),
        allowlist=str(config["allowlist"]),
        compression=config["compression"],
    )
    return service
