from twisted.application.service import ServiceMaker

smarkets = ServiceMaker(
    "smarkets", "smarkets_twisted.tap", "A Smarkets streaming API client", "smarkets"
)
smarkets_exchange = ServiceMaker(
    "smarkets-exchange", "smarkets_twisted.exchange.tap", "A simulated Smarkets exchange", "smarkets-exchange"
)
