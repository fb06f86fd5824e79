// The hook of docs/integration.md in React 19 (StrictMode), as an app would use it; the page's
// test reads what it renders from window.hookState and sends with window.hookSend.
import { StrictMode, useEffect } from "react";
import { createRoot } from "react-dom/client";
import { useBinanceChatWebSocket, type ChatConnectionInfo } from "./useBinanceChatWebSocket";

declare global {
  interface Window {
    hookConfig: { relayUrl: string; orderNo: string; credentials: () => Promise<ChatConnectionInfo> };
    hookState: unknown;
    hookRenders: number;
    hookSend: (content: string) => boolean;
  }
}

function OrderChat() {
  const { messages, isConnected, isConnecting, sendMessage, error } = useBinanceChatWebSocket({
    orderNo: window.hookConfig.orderNo,
    fetchConnectionInfo: window.hookConfig.credentials,
  });
  useEffect(() => {
    window.hookState = { messages, isConnected, isConnecting, error };
    window.hookSend = sendMessage;
  });
  return <pre id="chat">{JSON.stringify({ isConnected, isConnecting, error, messages: messages.length })}</pre>;
}

const root = document.createElement("div");
document.body.append(root);
createRoot(root).render(<StrictMode><OrderChat /></StrictMode>);
