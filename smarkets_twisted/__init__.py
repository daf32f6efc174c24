"""A Twisted client for the Smarkets streaming API, with a simulated exchange.

The names an application needs most are importable from here.
"""

from smarkets_twisted.factory import SmarketsClientFactory
from smarkets_twisted.proto.seto_pb2 import (
    GOOD_TIL_CANCELLED,
    GOOD_TILL_HALTED,
    IMMEDIATE_OR_CANCEL,
    KEEP_IN_PLAY,
    SIDE_BUY,
    SIDE_SELL,
)
from smarkets_twisted.protocol import SmarketsClientProtocol
from smarkets_twisted.settings import ClientSettings, SessionSettings

#: The reference client's names for the sides.
BUY = SIDE_BUY
SELL = SIDE_SELL

__all__ = [
    "BUY",
    "SELL",
    "GOOD_TIL_CANCELLED",
    "GOOD_TILL_HALTED",
    "IMMEDIATE_OR_CANCEL",
    "KEEP_IN_PLAY",
    "ClientSettings",
    "SessionSettings",
    "SmarketsClientFactory",
    "SmarketsClientProtocol",
]
