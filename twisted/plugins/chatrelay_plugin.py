from twisted.application.service import ServiceMaker

chatrelay = ServiceMaker("chatrelay", "chatrelay.tap", "WebSocket relay from browsers to Binance's C2C chat.", "chatrelay")
