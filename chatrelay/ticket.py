"""Mint a short-lived relay ticket for one target, so a browser never holds the relay token.

    BINANCE_PROXY_TOKEN=... python -m chatrelay.ticket TARGET [--ttl SECONDS]
    python -m chatrelay.ticket TARGET --token-file /etc/chatrelay/token

Signs with the first token when several are configured. Prints the ticket; the browser then opens ?ticket=<ticket>&target=<TARGET>, both URL-encoded.
"""

import argparse
import os
import sys

from chatrelay.credentials import mint_ticket, split_tokens


def main(argv=None, environ=os.environ, out=sys.stdout):
    """Print a ticket for the target given on the command line."""
    parser = argparse.ArgumentParser(prog="python -m chatrelay.ticket", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="the exact upstream URL the ticket is for")
    parser.add_argument("--ttl", type=float, default=60.0, help="seconds the ticket stays valid (default 60)")
    parser.add_argument("--token-file", help="file holding the relay token (default $BINANCE_PROXY_TOKEN)")
    args = parser.parse_args(argv)
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as token_file:
            tokens = split_tokens(token_file.read())
    else:
        tokens = split_tokens(environ.get("BINANCE_PROXY_TOKEN", ""))
    if not tokens:
        parser.error("no relay token: set BINANCE_PROXY_TOKEN or pass --token-file")
    print(mint_ticket(tokens[0], args.target, args.ttl), file=out)


if __name__ == "__main__":
    main()
