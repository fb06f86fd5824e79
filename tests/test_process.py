"""The installed command: plugin discovery, refusing to start, and the ticket minter."""

import io
import os
import socket
import subprocess
import sys

from chatrelay.credentials import Credentials
from chatrelay.ticket import main as ticket_main
from tests.loopback import TOKEN, twistd_path


def run_twistd(*args, token=TOKEN):
    env = {key: value for key, value in os.environ.items() if key != "BINANCE_PROXY_TOKEN"}
    if token is not None:
        env["BINANCE_PROXY_TOKEN"] = token
    return subprocess.run(
        [twistd_path(), "-n", "--pidfile=", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_twistd_lists_the_plugin():
    """After pip install, `twistd --help` lists chatrelay."""
    result = subprocess.run([twistd_path(), "--help"], capture_output=True, text=True, timeout=60)
    assert "chatrelay" in result.stdout


def test_chatrelay_help_lists_every_option():
    """`twistd chatrelay --help` documents the contract's options."""
    result = run_twistd("chatrelay", "--help")
    for option in ("--listen", "--allow-target", "--token-file", "--max-message-size",
                   "--connect-timeout", "--upstream-ca", "--allow-origin", "--ticket-ttl"):
        assert option in result.stdout


def test_without_a_token_the_relay_refuses_to_start():
    """No $BINANCE_PROXY_TOKEN and no --token-file: a non-zero exit that says why."""
    result = run_twistd("chatrelay", token=None)
    assert result.returncode != 0
    assert "BINANCE_PROXY_TOKEN" in result.stdout + result.stderr


def test_a_port_in_use_makes_the_relay_exit_non_zero():
    """A --listen port that cannot be bound stops the process with a clear message."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        result = run_twistd("chatrelay", "--listen", f"tcp:{port}:interface=127.0.0.1")
    finally:
        holder.close()
    assert result.returncode != 0
    assert "Address already in use" in result.stdout + result.stderr


def test_ticket_command_mints_a_ticket_the_relay_accepts():
    """`python -m chatrelay.ticket TARGET` prints a ticket good for that target only."""
    out = io.StringIO()
    target = "wss://im.binance.com/chat/c2c_x_v2?token=T&clientType=web"
    ticket_main([target, "--ttl", "30"], environ={"BINANCE_PROXY_TOKEN": "s3cret"}, out=out)
    ticket = out.getvalue().strip()
    credentials = Credentials("s3cret")
    assert credentials.check_ticket(ticket, target)
    assert not credentials.check_ticket(ticket, target + "x")
    assert not Credentials("other").check_ticket(ticket, target)


def test_ticket_command_runs_as_a_module():
    """The documented command line works."""
    env = dict(os.environ, BINANCE_PROXY_TOKEN="s3cret")
    result = subprocess.run([sys.executable, "-m", "chatrelay.ticket", "wss://x.test/chat/y"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.count(".") == 1
