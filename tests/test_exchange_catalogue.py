"""Tests for smarkets_twisted.exchange.catalogue."""

from __future__ import annotations

import json

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.errors import ConfigurationError
from smarkets_twisted.exchange.catalogue import (
    MARKET_STATES,
    Catalogue,
    Contract,
    Event,
    Market,
    demo_catalogue,
    load_catalogue,
    state_name,
)
from smarkets_twisted.proto import seto_pb2


class CatalogueTests(SynchronousTestCase):
    """Lookups on a catalogue built in code."""

    def test_lookups(self) -> None:
        market = Market(5, "Winner", (Contract(51, "A"), Contract(52, "B")), seto_pb2.MARKET_STATE_LIVE, event_id=9)
        catalogue = Catalogue([market], [Event(9, "Final")])
        self.assertIs(catalogue.market(5), market)
        self.assertIsNone(catalogue.market(6))
        self.assertEqual(market.contract(52), Contract(52, "B"))
        self.assertIsNone(market.contract(53))
        self.assertEqual(catalogue.event(9), Event(9, "Final"))
        self.assertIsNone(catalogue.event(8))
        self.assertEqual(catalogue.events, (Event(9, "Final"),))
        self.assertEqual(catalogue.markets_of(9), (market,))
        self.assertEqual(list(catalogue), [market])
        self.assertEqual(len(catalogue), 1)
        self.assertEqual(market.state_name, "live")

    def test_state_names(self) -> None:
        """Every seto market state has a file name, and they round-trip."""
        self.assertEqual(set(MARKET_STATES.values()), set(seto_pb2.MarketStateType.values()))
        for name, value in MARKET_STATES.items():
            self.assertEqual(state_name(value), name)
        self.assertRaises(ValueError, state_name, 99)  # type: ignore[arg-type]

    def test_demo(self) -> None:
        """The demo has one live and one open market, with two or three contracts each."""
        catalogue = demo_catalogue()
        states = sorted(market.state_name for market in catalogue)
        self.assertEqual(states, ["live", "open"])
        for market in catalogue:
            self.assertIn(len(market.contracts), (2, 3))
            self.assertIsNotNone(catalogue.event(market.event_id or 0))
        match_odds = catalogue.market(100)
        assert match_odds is not None
        self.assertEqual(match_odds.contract(1001), Contract(1001, "Home"))
        self.assertEqual(match_odds.contract(1002), Contract(1002, "Away"))

    def test_demo_is_fresh(self) -> None:
        """Each call gives a catalogue of its own: changing one leaves the next alone."""
        first = demo_catalogue().market(100)
        assert first is not None
        first.state = seto_pb2.MARKET_STATE_HALTED
        second = demo_catalogue().market(100)
        assert second is not None
        self.assertEqual(second.state, seto_pb2.MARKET_STATE_LIVE)


class LoadCatalogueTests(SynchronousTestCase):
    """Catalogue files: the documented format, and a clear error for each problem."""

    def write(self, content: str) -> str:
        path = FilePath(self.mktemp())
        path.setContent(content.encode("utf-8"))
        return path.path

    def write_json(self, document: object) -> str:
        return self.write(json.dumps(document))

    def assertBadFile(self, path: str, *fragments: str) -> None:
        message = str(self.assertRaises(ConfigurationError, load_catalogue, path))
        self.assertIn(path, message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_documented_example(self) -> None:
        path = self.write_json(
            {
                "markets": [
                    {
                        "id": 100,
                        "name": "Match odds",
                        "state": "live",
                        "contracts": [{"id": 1001, "name": "Home"}, {"id": 1002, "name": "Away"}],
                    }
                ]
            }
        )
        catalogue = load_catalogue(path)
        market = catalogue.market(100)
        assert market is not None
        self.assertEqual(market.name, "Match odds")
        self.assertEqual(market.state, seto_pb2.MARKET_STATE_LIVE)
        self.assertEqual(market.contracts, (Contract(1001, "Home"), Contract(1002, "Away")))
        self.assertIsNone(market.event_id)
        self.assertEqual(catalogue.events, ())

    def test_events_and_default_state(self) -> None:
        path = self.write_json(
            {
                "events": [{"id": 1, "name": "A v B"}, {"id": 2, "name": "C v D"}],
                "markets": [
                    {"id": 1, "name": "M1", "event_id": 1, "contracts": [{"id": 11, "name": "X"}]},
                    {"id": 2, "name": "M2", "event_id": 2, "state": "halted", "contracts": [{"id": 21, "name": "Y"}]},
                ],
            }
        )
        catalogue = load_catalogue(path)
        first, second = catalogue.market(1), catalogue.market(2)
        assert first is not None and second is not None
        self.assertEqual(first.state, seto_pb2.MARKET_STATE_OPEN)
        self.assertEqual(second.state, seto_pb2.MARKET_STATE_HALTED)
        self.assertEqual(catalogue.markets_of(2), (second,))
        self.assertEqual(catalogue.event(1), Event(1, "A v B"))

    def test_every_state_name(self) -> None:
        for name, value in MARKET_STATES.items():
            path = self.write_json(
                {"markets": [{"id": 1, "name": "M", "state": name, "contracts": [{"id": 2, "name": "C"}]}]}
            )
            market = load_catalogue(path).market(1)
            assert market is not None
            self.assertEqual(market.state, value)

    def test_file_problems(self) -> None:
        self.assertBadFile(self.mktemp(), "cannot read")
        self.assertBadFile(self.write("{"), "not valid JSON")
        self.assertBadFile(self.write('{"markets": [], "markets": []}'), "appears twice")
        self.assertBadFile(self.write_json([]), "expected a JSON object")
        self.assertBadFile(self.write_json({}), "missing key 'markets'")
        self.assertBadFile(self.write_json({"markets": [], "extra": 1}), "unknown key 'extra'")
        self.assertBadFile(self.write_json({"markets": {}}), '"markets" must be a list')
        self.assertBadFile(self.write_json({"markets": [], "events": {}}), '"events" must be a list')

    def test_market_problems(self) -> None:
        good = {"id": 1, "name": "M", "state": "open", "contracts": [{"id": 10, "name": "C"}]}
        cases: list[tuple[object, str]] = [
            (7, "expected an object"),
            ({**good, "stat": "open"}, "unknown key 'stat'"),
            ({"name": "M", "contracts": good["contracts"]}, "missing key 'id'"),
            ({"id": 1, "contracts": good["contracts"]}, "missing key 'name'"),
            ({"id": 1, "name": "M"}, "missing key 'contracts'"),
            ({**good, "id": 0}, '"id" must be an integer'),
            ({**good, "id": 2**32}, '"id" must be an integer'),
            ({**good, "id": "1"}, '"id" must be an integer'),
            ({**good, "id": 1.5}, '"id" must be an integer'),
            ({**good, "name": ""}, '"name" must be a non-empty string'),
            ({**good, "state": "closed"}, "unknown state 'closed'"),
            ({**good, "state": ["open"]}, "unknown state"),
            ({**good, "event_id": 3}, "names no event"),
            ({**good, "event_id": [3]}, "names no event"),
            ({**good, "contracts": []}, '"contracts" must be a non-empty list'),
            ({**good, "contracts": [{"id": 10}]}, "contracts[0]: missing key 'name'"),
            ({**good, "contracts": [{"id": 10, "name": "C", "odds": 2}]}, "unknown key 'odds'"),
            ({**good, "contracts": [{"id": -1, "name": "C"}]}, '"id" must be an integer'),
            ({**good, "contracts": [{"id": 10, "name": "C"}, {"id": 10, "name": "D"}]}, "duplicate contract id 10"),
            ({**good, "contracts": [{"id": 99, "name": "C"}]}, "duplicate contract id 99"),
        ]
        other = {"id": 2, "name": "Other", "contracts": [{"id": 99, "name": "Z"}]}
        for entry, fragment in cases:
            with self.subTest(entry=entry):
                self.assertBadFile(self.write_json({"markets": [other, entry]}), "markets[1]", fragment)

    def test_duplicate_market(self) -> None:
        markets = [
            {"id": 1, "name": "A", "contracts": [{"id": 10, "name": "C"}]},
            {"id": 1, "name": "B", "contracts": [{"id": 20, "name": "D"}]},
        ]
        self.assertBadFile(self.write_json({"markets": markets}), "markets[1]", "duplicate market id 1")

    def test_event_problems(self) -> None:
        market = {"id": 1, "name": "A", "contracts": [{"id": 10, "name": "C"}]}
        cases: list[tuple[object, str]] = [
            ("x", "expected an object"),
            ({"id": 1}, "missing key 'name'"),
            ({"id": 0, "name": "E"}, '"id" must be an integer'),
            ({"id": 5, "name": "E", "when": "now"}, "unknown key 'when'"),
            ({"id": 5, "name": "F"}, "duplicate event id 5"),
        ]
        for entry, fragment in cases:
            with self.subTest(entry=entry):
                document = {"events": [{"id": 5, "name": "E"}, entry], "markets": [market]}
                self.assertBadFile(self.write_json(document), "events[1]", fragment)
