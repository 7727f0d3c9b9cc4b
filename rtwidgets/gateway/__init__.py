"""The rtwidgets WebSocket gateway: ``Gateway`` (server) and ``GatewayConfig`` (limits)."""

from .brokers.base import Broker, BrokerUnavailable
from .brokers.memory import MemoryBroker
from .config import GatewayConfig
from .server import Gateway

__all__ = ["Broker", "BrokerUnavailable", "Gateway", "GatewayConfig", "MemoryBroker"]
