"""What can be traded: events, their markets, and each market's contracts.

Market states are the seto ``MarketStateType`` values, so that the server can
copy them into ``market_state`` messages.  The matching engine changes a
market's state; the catalogue only holds it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from smarkets_twisted.errors import ConfigurationError
from smarkets_twisted.exchange.accounts import read_json_file
from smarkets_twisted.proto import seto_pb2

#: Market state names used in catalogue files, and their seto values.
MARKET_STATES: dict[str, seto_pb2.MarketStateType] = {
    "new": seto_pb2.MARKET_STATE_NEW,
    "open": seto_pb2.MARKET_STATE_OPEN,
    "live": seto_pb2.MARKET_STATE_LIVE,
    "halted": seto_pb2.MARKET_STATE_HALTED,
    "settled": seto_pb2.MARKET_STATE_SETTLED,
    "voided": seto_pb2.MARKET_STATE_VOIDED,
}

_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1
_TOP_KEYS = frozenset({"events", "markets"})
_EVENT_KEYS = frozenset({"id", "name"})
_MARKET_KEYS = frozenset({"id", "name", "state", "event_id", "contracts"})
_CONTRACT_KEYS = frozenset({"id", "name"})


@dataclass(frozen=True)
class Event:
    """A sporting event (a match, a race) that groups markets."""

    id: int
    name: str


@dataclass(frozen=True)
class Contract:
    """One outcome of a market; exactly one contract of a settled market wins."""

    id: int
    name: str


@dataclass
class Market:
    """A market: its contracts, its state and, once settled, the winner."""

    id: int
    name: str
    contracts: tuple[Contract, ...]
    state: seto_pb2.MarketStateType = seto_pb2.MARKET_STATE_OPEN
    event_id: int | None = None
    winner: int | None = None
    _by_id: dict[int, Contract] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id = {contract.id: contract for contract in self.contracts}

    def contract(self, contract_id: int) -> Contract | None:
        """The contract with this id in this market, or None."""
        return self._by_id.get(contract_id)

    @property
    def state_name(self) -> str:
        """The state as catalogue files spell it (``"live"``)."""
        return state_name(self.state)


class Catalogue:
    """Every event and market of the exchange, by id."""

    def __init__(self, markets: list[Market], events: list[Event] | None = None) -> None:
        self._events = {event.id: event for event in events or []}
        self._markets = {market.id: market for market in markets}

    def __iter__(self) -> Iterator[Market]:
        return iter(self._markets.values())

    def __len__(self) -> int:
        return len(self._markets)

    def market(self, market_id: int) -> Market | None:
        """The market with this id, or None."""
        return self._markets.get(market_id)

    def event(self, event_id: int) -> Event | None:
        """The event with this id, or None."""
        return self._events.get(event_id)

    @property
    def events(self) -> tuple[Event, ...]:
        """Every event, in the order they were given."""
        return tuple(self._events.values())

    def markets_of(self, event_id: int) -> tuple[Market, ...]:
        """The markets of one event."""
        return tuple(market for market in self._markets.values() if market.event_id == event_id)


def state_name(state: seto_pb2.MarketStateType) -> str:
    """The catalogue-file name of a seto market state."""
    for name, value in MARKET_STATES.items():
        if value == state:
            return name
    raise ValueError(f"unknown market state {state}")


def demo_catalogue() -> Catalogue:
    """The built-in catalogue: one football match with a live and an open market."""
    return Catalogue(
        [
            Market(
                100,
                "Match odds",
                (Contract(1001, "Home"), Contract(1002, "Away"), Contract(1003, "Draw")),
                seto_pb2.MARKET_STATE_LIVE,
                event_id=1,
            ),
            Market(
                200,
                "Over/under 2.5 goals",
                (Contract(2001, "Over 2.5"), Contract(2002, "Under 2.5")),
                seto_pb2.MARKET_STATE_OPEN,
                event_id=1,
            ),
        ],
        [Event(1, "Demo United vs Example City")],
    )


def load_catalogue(path: str | os.PathLike[str]) -> Catalogue:
    """Read a catalogue file.

    The format is ``{"markets": [{"id": 100, "name": "Match odds", "state":
    "live", "contracts": [{"id": 1001, "name": "Home"}, ...]}]}``, with an
    optional top-level ``"events": [{"id": 1, "name": "..."}]`` that markets
    name with ``"event_id"``.  ``"state"`` defaults to ``"open"``.  Market and
    contract ids are unique across the whole catalogue.

    :raises ConfigurationError: naming the file and the problem.
    """
    where = os.fspath(path)
    document = read_json_file(path)
    if not isinstance(document, dict):
        raise ConfigurationError(f"{where}: expected a JSON object")
    _check_keys(where, document, _TOP_KEYS, ("markets",))
    events = _events(where, document.get("events", []))
    markets_data = document["markets"]
    if not isinstance(markets_data, list):
        raise ConfigurationError(f'{where}: "markets" must be a list')
    event_ids = {event.id for event in events}
    market_ids: set[int] = set()
    contract_ids: set[int] = set()
    markets = []
    for index, entry in enumerate(markets_data):
        market = _market(f"{where}: markets[{index}]", entry, event_ids, contract_ids)
        if market.id in market_ids:
            raise ConfigurationError(f"{where}: markets[{index}]: duplicate market id {market.id}")
        market_ids.add(market.id)
        markets.append(market)
    return Catalogue(markets, events)


def _events(where: str, entries: object) -> list[Event]:
    if not isinstance(entries, list):
        raise ConfigurationError(f'{where}: "events" must be a list')
    events: list[Event] = []
    for index, entry in enumerate(entries):
        place = f"{where}: events[{index}]"
        entry = _object(place, entry, _EVENT_KEYS, ("id", "name"))
        event = Event(_id(place, entry["id"], _UINT64_MAX), _name(place, entry["name"]))
        if any(seen.id == event.id for seen in events):
            raise ConfigurationError(f"{place}: duplicate event id {event.id}")
        events.append(event)
    return events


def _market(place: str, entry: object, event_ids: set[int], contract_ids: set[int]) -> Market:
    entry = _object(place, entry, _MARKET_KEYS, ("id", "name", "contracts"))
    market_id = _id(place, entry["id"], _UINT32_MAX)
    state = entry.get("state", "open")
    if not isinstance(state, str) or state not in MARKET_STATES:
        raise ConfigurationError(f"{place}: unknown state {state!r} (expected one of {', '.join(MARKET_STATES)})")
    event_id = entry.get("event_id")
    if event_id is not None and (
        isinstance(event_id, bool) or not isinstance(event_id, int) or event_id not in event_ids
    ):
        raise ConfigurationError(f'{place}: event_id {event_id!r} names no event in "events"')
    contracts_data = entry["contracts"]
    if not isinstance(contracts_data, list) or not contracts_data:
        raise ConfigurationError(f'{place}: "contracts" must be a non-empty list')
    contracts = []
    for index, contract_entry in enumerate(contracts_data):
        contract_place = f"{place}: contracts[{index}]"
        contract_entry = _object(contract_place, contract_entry, _CONTRACT_KEYS, ("id", "name"))
        contract = Contract(
            _id(contract_place, contract_entry["id"], _UINT32_MAX), _name(contract_place, contract_entry["name"])
        )
        if contract.id in contract_ids:
            raise ConfigurationError(f"{contract_place}: duplicate contract id {contract.id}")
        contract_ids.add(contract.id)
        contracts.append(contract)
    return Market(market_id, _name(place, entry["name"]), tuple(contracts), MARKET_STATES[state], event_id)


def _object(place: str, entry: object, allowed: frozenset[str], required: tuple[str, ...]) -> dict[str, object]:
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{place}: expected an object")
    _check_keys(place, entry, allowed, required)
    return entry


def _check_keys(place: str, entry: dict[str, object], allowed: frozenset[str], required: tuple[str, ...]) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigurationError(f"{place}: unknown key {unknown[0]!r}")
    for key in required:
        if key not in entry:
            raise ConfigurationError(f"{place}: missing key {key!r}")


def _id(place: str, value: object, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ConfigurationError(f'{place}: "id" must be an integer from 1 to {limit}, not {value!r}')
    return value


def _name(place: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f'{place}: "name" must be a non-empty string')
    return value
