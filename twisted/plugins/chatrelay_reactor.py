from twisted.application.reactors import Reactor

chatrelay = Reactor("chatrelay", "chatrelay.reactor", "epoll, without the legacy log context per I/O event (chatrelay)")
