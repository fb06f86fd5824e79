"""The README's JavaScript ticket minter, run in Node, makes tickets the relay accepts."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from chatrelay.credentials import Credentials

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_snippet():
    text = README.read_text()
    marker = text.index("<!-- mint-ticket.js")
    return re.search(r"```js\n(.*?)```", text[marker:], re.DOTALL).group(1)


def test_readme_minter_makes_tickets_the_relay_accepts():
    """The ten lines an edge function needs, verified by the relay's own check."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed")
    target = "wss://im.binance.com:443/chat/c2c_abc_v2?token=TOKENx&clientType=web"
    script = readme_snippet() + f"\nmintTicket('relay s3cret', {json.dumps(target)}).then(t => console.log(t));\n"
    result = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    ticket = result.stdout.strip()
    assert Credentials("relay s3cret").check_ticket(ticket, target)
    assert not Credentials("relay s3cret").check_ticket(ticket, target.replace("abc", "abd"))
