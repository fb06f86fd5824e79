"""chatrelay: joins each browser WebSocket to its own upstream (Binance chat) WebSocket."""

__version__ = "0.1.0"
