"""`twistd chatrelay`: command-line options and the service they describe."""

import os

import txaio

from twisted.application import strports
from twisted.python import usage
from twisted.logger import Logger

import autobahn
import autobahn.websocket

from chatrelay import __version__
from chatrelay.credentials import KeyChecker
from chatrelay.gate import Gate
from chatrelay.legs import LegSettings, RelayServerFactory
from chatrelay.service import RelayService
from chatrelay.targets import Allowlist, TargetError, parse_pattern
from chatrelay.upstream import PlatformTrustPlus

log = Logger(namespace="chatrelay")

DEFAULT_LISTEN = r"tcp:8080:interface=127.0.0.1"
TOKEN_ENVIRONMENT_VARIABLE = "BINANCE_PROXY_TOKEN"


def _positive(kind):
    def coerce(text):
        value = kind(text)
        if value <= 0:
            raise ValueError(f"must be positive, not {text}")
        return value

    coerce.coerceDoc = f"A positive {kind.__name__}."
    return coerce


def _non_negative_float(text):
    value = float(text)
    if value < 0:
        raise ValueError(f"must not be negative, not {text}")
    return value


class Options(usage.Options):
    """Options for `twistd chatrelay`."""

    synopsis = "[--listen ENDPOINT]... [--allow-target PATTERN]... [options]"
    longdesc = (
        "Relays each browser WebSocket (ws(s)://HOST/ANY/PATH?key=TOKEN&target=URL) to its own "
        "upstream WebSocket at the URL-encoded target, which must match the allowlist. The relay "
        f"token comes from ${TOKEN_ENVIRONMENT_VARIABLE} or --token-file."
    )
    optParameters = [
        ["token-file", None, None, "File holding the relay token (instead of the environment)."],
        ["max-message-size", None, 1 << 20, "Largest message relayed, in bytes (1009 beyond).", _positive(int)],
        ["connect-timeout", None, 10.0, "Seconds to open the upstream leg (1014 beyond).", _positive(float)],
        ["upstream-ca", None, None, "PEM bundle trusted for upstream TLS besides the platform's CAs."],
        ["close-timeout", None, 5.0, "Seconds to wait for a closing handshake's answer.", _positive(float)],
        ["ping-interval", None, 30.0, "Seconds between keepalive pings on each leg (0: none).", _non_negative_float],
        ["ping-timeout", None, 30.0, "Seconds to wait for a keepalive pong (0: no limit).", _non_negative_float],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []
        self["allow-target"] = []
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

    def postOptions(self):
        """Apply defaults and read the relay token."""
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        self["allowlist"] = (
            Allowlist(self["allow-target"]) if self["allow-target"] else Allowlist.from_strings(())
        )
        self["token"] = self._read_token()
        if self["upstream-ca"] is not None:
            try:
                self["trust-root"] = PlatformTrustPlus.from_pem_file(self["upstream-ca"])
            except (OSError, ValueError) as error:
                raise usage.UsageError(f"--upstream-ca: {error}")
        else:
            self["trust-root"] = PlatformTrustPlus()

    def _read_token(self):
        if self["token-file"] is not None:
            try:
                with open(self["token-file"], encoding="utf-8") as token_file:
                    token = token_file.read().strip()
            except OSError as error:
                raise usage.UsageError(f"--token-file: {error.strerror}: {self['token-file']}")
            if not token:
                raise usage.UsageError(f"--token-file: {self['token-file']} is empty")
            return token
        token = self.environ.get(TOKEN_ENVIRONMENT_VARIABLE, "").strip()
        if not token:
            raise usage.UsageError(
                f"no relay token: set {TOKEN_ENVIRONMENT_VARIABLE} or pass --token-file"
            )
        return token


def makeService(config, reactor=None):
    """Build the relay service: one listener per --listen, one factory for all."""
    if reactor is None:
        from twisted.internet import reactor
    txaio.use_twisted()
    txaio.set_global_log_level("info")
    settings = LegSettings(
        max_message_size=config["max-message-size"],
        close_timeout=config["close-timeout"],
        ping_interval=config["ping-interval"],
        ping_timeout=config["ping-timeout"],
    )
    factory = RelayServerFactory(
        reactor,
        Gate(KeyChecker(config["token"]), config["allowlist"]),
        settings,
        connect_timeout=config["connect-timeout"],
        trust_root=config["trust-root"],
    )
    service = RelayService(reactor, factory)
    for description in config["listen"]:
        try:
            listener = strports.service(description, factory, reactor=reactor)
        except (ValueError, KeyError, TypeError, OSError) as error:
            raise SystemExit(f"chatrelay: cannot use --listen {description}: {error}")
        listener.setServiceParent(service)
    log.info(
        "chatrelay {version} (autobahn {autobahn}, NVX {nvx}) listening on {listen}; "
        "allowed targets: {allowlist}",
        version=__version__,
        autobahn=autobahn.__version__,
        nvx="on" if autobahn.websocket.USES_NVX else "OFF",
        listen=", ".join(config["listen"]),
        allowlist=str(config["allowlist"]),
    )
    return service
