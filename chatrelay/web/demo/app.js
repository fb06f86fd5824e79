// The demo page: a chat with the fake Binance through the relay, built on chatrelay-client.js.
// The module is imported relative to this file, so the page also works under a path prefix.
import { CLOSE_CODE_MEANINGS, ChatRelayClient } from "../chatrelay-client.js";

const params = new URLSearchParams(location.search);
// ?key=RELAY_KEY connects with the relay key instead of a ticket (both are shown in docs/integration.md).
const relayKey = params.get("key");
const api = (path) => new URL(path, location.href); // /demo/session, /demo/push, /demo/drop
const $ = (id) => document.getElementById(id);

const SYSTEM_TEXT = {
  buyer_payed: "The buyer marked the order as paid.",
  seller_completed: "The seller released the crypto.",
  buyer_cancelled: "The buyer cancelled the order.",
};

let orderNo = null;
const pending = new Map(); // uuid -> <li> of a message sent and not yet echoed

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock() {
  return new Date().toTimeString().slice(0, 8);
}

function log(text, kind = "info") {
  const line = element("li", `log-${kind}`);
  line.append(element("time", "", clock()), " ", text);
  $("log").append(line);
  line.scrollIntoView({ block: "nearest" });
}

function renderState(state) {
  const badge = $("state");
  badge.textContent = state;
  badge.className = `state state-${state}`;
  const open = state === "open";
  for (const id of ["text", "send", "push-paid", "push-text", "drop"]) $(id).disabled = !open;
  $("reconnect").hidden = state !== "closed";
  if (state !== "connecting") $("state-detail").textContent = "";
}

function messageItem(message) {
  const item = element("li", `msg msg-${message.type}${message.self ? " self" : ""}`);
  item.dataset.type = String(message.type);
  if (message.id !== undefined) item.dataset.id = String(message.id);
  item.append(element("span", "tag", String(message.type)));
  item.append(element("span", "id", message.id !== undefined ? `#${message.id}` : "no id yet"));
  return item;
}

function fillBody(item, message) {
  if (message.type === "system") {
    let content = {};
    try {
      content = JSON.parse(message.content);
    } catch (error) {
      content = { type: String(message.content) };
    }
    item.append(element("span", "who", "Binance"));
    item.append(element("span", "body", `${content.type}: ${SYSTEM_TEXT[content.type] || ""}`.trim()));
  } else if (message.type === "error") {
    item.append(element("span", "who", "Binance"));
    item.append(element("span", "body", `${message.content} (message ${message.uuid ?? "?"} rejected)`));
  } else if (message.type === "text") {
    item.append(element("span", "who", message.self ? "you" : message.fromNickname || "counterparty"));
    item.append(element("span", "body", message.content));
  } else {
    item.append(element("span", "body", JSON.stringify(message)));
  }
}

function showMessage(message) {
  if (!message || typeof message !== "object") {
    log(`non-JSON message: ${String(message).slice(0, 80)}`);
    return;
  }
  if (message.type === "statistics") {
    log(`Binance statistics: ${message.subType} = ${message.totalCount}`);
    return;
  }
  const item = messageItem(message);
  fillBody(item, message);
  const sent = message.uuid !== undefined && pending.get(message.uuid);
  if (sent && message.type === "error") {
    pending.delete(message.uuid);
    sent.classList.replace("pending", "rejected");
    sent.querySelector(".note").textContent = "rejected";
    $("messages").append(item);
  } else if (sent) {
    pending.delete(message.uuid);
    item.append(element("span", "note", "echo: stored by Binance"));
    sent.replaceWith(item);
  } else {
    $("messages").append(item);
  }
  item.scrollIntoView({ block: "nearest" });
}

function showError(error) {
  const box = $("error");
  box.textContent = error.message;
  box.dataset.code = error.code ?? "";
  box.hidden = false;
}

function describeCloseInfo(info) {
  const meaning = info.reason ? `"${info.reason}"` : `(${CLOSE_CODE_MEANINGS[info.code] || "no reason"})`;
  const what = info.timedOut ? `connect timed out (${info.reason})` : `close ${info.code} ${meaning}`;
  if (info.willRetry) return `${what}; reconnect ${info.retry}/${client.maxRetries} in ${info.delayMs} ms`;
  if (info.fatal) return `${what}; refused by the relay, not retrying`;
  if (client.retryCodes.has(info.code) || info.timedOut) return `${what}; gave up after ${client.retries} retries`;
  return `${what}; not retried`;
}

const client = new ChatRelayClient({
  relayUrl: api("../chat-relay").href,
  async getCredentials({ attempt }) {
    const response = await fetch(api("session"), { cache: "no-store" });
    if (!response.ok) throw new Error(`/demo/session answered ${response.status}`);
    const session = await response.json();
    orderNo = session.orderNo;
    $("order-no").textContent = orderNo;
    log(`attempt ${attempt}: fresh Binance token and ${relayKey ? "relay key" : "ticket"} from /demo/session`);
    return relayKey ? { key: relayKey, target: session.target } : { ticket: session.ticket, target: session.target };
  },
  onStateChange: renderState,
  onOpen: ({ attempt }) => log(`open (attempt ${attempt}): the relay's Binance leg is connected`, "open"),
  onClose(info) {
    log(describeCloseInfo(info), "close");
    if (info.willRetry) $("state-detail").textContent = `retry ${info.retry}/${client.maxRetries} in ${info.delayMs} ms`;
  },
  onError: showError,
  onMessage: showMessage,
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("text");
  const content = input.value.trim();
  if (!content) return;
  const uuid = `${Date.now()}-${Math.random().toString(16).slice(2, 10)}`;
  const message = {
    type: "text", uuid, orderNo, content, self: true, clientType: "web", createTime: Date.now(), sendStatus: 0,
  };
  if (!client.send(message)) return;
  const item = messageItem({ type: "text", self: true });
  item.classList.add("pending");
  fillBody(item, message);
  item.append(element("span", "note", "sending…"));
  pending.set(uuid, item);
  $("messages").append(item);
  input.value = "";
});

async function demoCall(path) {
  try {
    const response = await fetch(api(path), { cache: "no-store" });
    if (!response.ok) log(`${path} answered ${response.status}`, "close");
  } catch (error) {
    log(`${path} failed: ${error.message}`, "close");
  }
}

$("push-paid").addEventListener("click", () => demoCall("push?kind=buyer_paid"));
$("push-text").addEventListener("click", () => demoCall(`push?kind=text&content=${encodeURIComponent("Hi, I have paid.")}`));
$("drop").addEventListener("click", () => {
  log("asking the fake Binance to drop every connection (no close frame)");
  demoCall("drop");
});
$("reconnect").addEventListener("click", () => {
  $("error").hidden = true;
  client.connect();
});

window.chatDemo = { client };
client.connect();
