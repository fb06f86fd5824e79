"""The React hook of docs/integration.md, as the document shows it: it type-checks with
TypeScript's strict mode (with the client module beside it), and in React 19 (StrictMode) in
Chromium it talks to Binance's fake through the demo relay, with a ticket and with the key,
through a Binance drop and the reconnect; with a wrong key it shows the error and stops.

The hook is taken from the document's code block; tests/browser/react_app.tsx renders it as
an app would, and esbuild bundles the two with React for the page.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.browser.test_demo_page import RECORD_SOCKETS
from tests.jsdeps import node_modules

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HOOK_FILE = "useBinanceChatWebSocket.ts"
TSCONFIG = """{
  "compilerOptions": {
    "strict": true, "allowJs": true, "checkJs": true, "noEmit": true, "skipLibCheck": true,
    "target": "es2022", "module": "esnext", "moduleResolution": "bundler", "jsx": "react-jsx",
    "lib": ["es2022", "dom", "dom.iterable"]
  },
  "files": ["chatrelay-client.js", "useBinanceChatWebSocket.ts", "react_app.tsx"]
}
"""


def hook_source():
    """The hook's code block in docs/integration.md (the one that names its file)."""
    text = (REPO / "docs" / "integration.md").read_text(encoding="utf-8")
    blocks = [block for block in re.findall(r"```ts\n(.*?)```", text, re.DOTALL)
              if block.startswith(f"// {HOOK_FILE}:")]
    assert len(blocks) == 1, "docs/integration.md has no (or more than one) block for the hook"
    return blocks[0]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A folder as an app would have it: the client module, the hook beside it, the component
    rendering it, a strict tsconfig, and the Node packages."""
    folder = tmp_path_factory.mktemp("react-app")
    (folder / "node_modules").symlink_to(node_modules(), target_is_directory=True)
    shutil.copy(REPO / "chatrelay" / "web" / "chatrelay-client.js", folder)
    shutil.copy(HERE / "react_app.tsx", folder)
    (folder / HOOK_FILE).write_text(hook_source(), encoding="utf-8")
    (folder / "tsconfig.json").write_text(TSCONFIG)
    return folder


def run_tool(app, name, *args):
    """Run a package's command (node_modules/.bin) in the app folder; its output if it failed, else ""."""
    result = subprocess.run([str(app / "node_modules" / ".bin" / name), *args], cwd=app,
                            capture_output=True, text=True, timeout=120)
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_hook_and_client_module_type_check_strictly(app):
    """`tsc --strict` with checkJs: the client module's JSDoc types, the hook and a component."""
    assert run_tool(app, "tsc", "-p", "tsconfig.json") == ""


@pytest.fixture(scope="module")
def bundle(app):
    """The component, the hook, the client module and React 19, as one script for the page."""
    problem = run_tool(app, "esbuild", "react_app.tsx", "--bundle", "--format=iife", "--outfile=app.js",
                       "--define:process.env.NODE_ENV=\"development\"", "--log-level=warning")
    assert problem == ""
    return (app / "app.js").read_text(encoding="utf-8")


# What the backend hands the page in each mode, from the demo's fake backend (/demo/session).
CONFIGURE = """async ([relayUrl, mode, token]) => {
  const session = async () => (await fetch("/demo/session", { cache: "no-store" })).json();
  const first = await session();
  window.hookConfig = {
    orderNo: first.orderNo,
    credentials: async () => {
      const s = await session();
      if (mode === "ticket") return { relayUrl, ticket: s.ticket, target: s.target };
      // The key, and the target in the parts the hook puts together itself.
      const url = new URL(s.target);
      const cut = url.pathname.lastIndexOf("/");
      return {
        relayUrl,
        relayToken: mode === "wrong-key" ? "wrong" : token,
        chatWssUrl: `${url.protocol}//${url.host}${url.pathname.slice(0, cut)}`,
        listenKey: url.pathname.slice(cut + 1),
        listenToken: url.searchParams.get("token"),
      };
    },
  };
}"""


def start(page, relay, bundle, mode):
    """Load the app on the relay's origin (its 404 page: see the harness fixture) in `mode`."""
    page.add_init_script(RECORD_SOCKETS)
    page.goto(relay.http + "/__react-hook-test__")
    page.evaluate(CONFIGURE, [f"ws://127.0.0.1:{relay.port}/chat-relay", mode, relay.token])
    page.add_script_tag(content=bundle)


def messages_with(page, content):
    """The hook's messages whose content is `content`."""
    return page.evaluate("(content) => window.hookState.messages.filter((m) => m.content === content)",
                         content)


def send_and_see_the_echo(page, content):
    """sendMessage: the message shows at once as pending, then as Binance's echo, with its id."""
    assert page.evaluate("(content) => window.hookSend(content)", content) is True
    page.wait_for_function("""(content) => window.hookState.messages.some(
                                (m) => m.content === content && !m.pending && m.id)""", arg=content)
    [echo] = messages_with(page, content)
    assert echo["self"] is True and echo["type"] == "text" and not echo.get("rejected")


@pytest.mark.parametrize("mode", ["ticket", "key"])
def test_hook_in_react_19_talks_to_binance_through_the_relay(page, demo_relay, bundle, mode):
    """Connect, send (pending, then echoed), a counterparty's message, a Binance drop: the hook
    reconnects with fresh credentials and works again."""
    start(page, demo_relay, bundle, mode)
    page.wait_for_function("window.hookState?.isConnected === true")
    send_and_see_the_echo(page, "Hello from React")
    pushed = page.evaluate("async () => (await fetch('/demo/push?kind=text&content=Hi%20there')).json()")
    assert pushed["pushed"] == 1
    page.wait_for_function("window.hookState.messages.some((m) => m.content === 'Hi there' && !m.self)")

    assert page.evaluate("async () => (await fetch('/demo/drop')).json()")["dropped"] == 1
    page.wait_for_function("window.__closes.length === 1")
    page.wait_for_function("window.hookState.isConnected === true && window.__sockets.length === 2")
    # A clean close, with the relay's code: the relay closes TCP only after the closing handshake.
    assert page.evaluate("window.__closes.map((c) => [c.code, c.wasClean])") == [[1014, True]]
    assert page.evaluate("window.hookState.error") is None
    send_and_see_the_echo(page, "Back after the drop")


def test_hook_with_a_wrong_key_shows_the_error_and_stops(page, demo_relay, bundle):
    """4401: `error` says why, the hook is neither connected nor connecting, and no second
    connection follows once the first retry would have been due (1 s after the close)."""
    start(page, demo_relay, bundle, "wrong-key")
    page.wait_for_function("window.hookState?.error != null")
    state = page.evaluate("window.hookState")
    assert "4401" in state["error"] and "invalid relay key" in state["error"]
    assert state["isConnected"] is False and state["isConnecting"] is False
    assert page.evaluate("window.__closes.map((c) => [c.code, c.wasClean])") == [[4401, True]]
    page.wait_for_function("performance.now() > window.__closes[0].t + 1500")
    assert page.evaluate("window.__sockets.length") == 1
