"""The session layer, in the style of a FIX session acceptance suite.

Two Sessions, one per end, are wired together through framing.Deframer; each
test is named for the scenario it plays.  Time is passed explicitly.
"""

from __future__ import annotations

from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.errors import ParseError, SequenceError
from smarkets_twisted.framing import Deframer
from smarkets_twisted.payloads import Payload, application_message, handler_name, parse_payload, session_message
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.session import Role, Session, SessionState

SESSION_ID = "session-secret-1234"


def frames_of(data: bytes) -> list[bytes]:
    return Deframer().feed(data)


def payloads_of(data: bytes) -> list[Payload]:
    return [parse_payload(frame) for frame in frames_of(data)]


def describe(payload: Payload) -> tuple[str, int, bool]:
    eto = payload.eto_payload
    return handler_name(payload), eto.seq, eto.is_replay


def quote(market_id: int) -> Payload:
    return application_message("market_subscribe", market_id=market_id)


def market_ids(delivered: list[Payload]) -> list[int]:
    return [p.market_subscribe.market_id for p in delivered if p.type == seto_pb2.PAYLOAD_MARKET_SUBSCRIBE]


class Link:
    """A client Session and an exchange Session joined by two deframed pipes."""

    def __init__(
        self,
        client_state: SessionState | None = None,
        exchange_state: SessionState | None = None,
        now: float = 0.0,
    ) -> None:
        self.now = now
        self.client = Session(client_state or SessionState(), Role.CLIENT, now=now)
        self.exchange = Session(exchange_state or SessionState(), Role.EXCHANGE, now=now)
        self.to_exchange = Deframer()
        self.to_client = Deframer()
        self.client_delivered: list[Payload] = []
        self.exchange_delivered: list[Payload] = []
        self.client_sent: list[Payload] = []
        self.exchange_sent: list[Payload] = []

    def client_frames(self) -> list[bytes]:
        """What the client has written since last asked, as frames."""
        frames = self.to_exchange.feed(self.client.data_to_send())
        self.client_sent.extend(parse_payload(f) for f in frames)
        return frames

    def exchange_frames(self) -> list[bytes]:
        frames = self.to_client.feed(self.exchange.data_to_send())
        self.exchange_sent.extend(parse_payload(f) for f in frames)
        return frames

    def deliver_to_exchange(self, frames: list[bytes]) -> list[Payload]:
        out = []
        for frame in frames:
            out.extend(self.exchange.receive(frame, self.now))
        self.exchange_delivered.extend(out)
        return out

    def deliver_to_client(self, frames: list[bytes]) -> list[Payload]:
        out = []
        for frame in frames:
            out.extend(self.client.receive(frame, self.now))
        self.client_delivered.extend(out)
        return out

    def pump(self, rounds: int = 20) -> None:
        """Exchange everything both ways until both sides are quiet."""
        for _ in range(rounds):
            to_exchange = self.client_frames()
            to_client = self.exchange_frames()
            if not to_exchange and not to_client:
                return
            self.deliver_to_exchange(to_exchange)
            self.deliver_to_client(to_client)
        raise AssertionError("the sessions never went quiet")

    def login(self, session_id: str = SESSION_ID) -> Payload:
        """Client logs in (new or resumed); the exchange accepts; returns the response."""
        self.client.start_login(self.now, username="user", password="hunter2-secret")
        (login_frame,) = self.client_frames()
        login = parse_payload(login_frame)
        self.exchange.state.session_id = session_id
        self.exchange.accept_login(login, self.now)
        frames = self.exchange_frames()
        self.deliver_to_client(frames)
        return self.exchange_sent[-1]


class LogCapture:
    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def at(self, level: LogLevel) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") == level]


def established(sent_log_size: int = 100) -> Link:
    link = Link(SessionState(sent_log_size), SessionState(sent_log_size))
    link.login()
    link.pump()
    return link


class LoginScenarios(SynchronousTestCase):
    def test_client_login_new_session(self) -> None:
        state = SessionState()
        state.next_outgoing_seq = 40  # stale numbers without a session id are forgotten
        state.next_incoming_seq = 30
        link = Link(client_state=state)
        response = link.login()
        (login,) = link.client_sent
        self.assertEqual(login.eto_payload.seq, 1)
        self.assertFalse(login.eto_payload.HasField("login"))
        self.assertEqual(login.login.username, "user")
        self.assertEqual(response.eto_payload.seq, 1)
        self.assertEqual(response.eto_payload.login_response.reset, 2)
        self.assertEqual([handler_name(p) for p in link.client_delivered], ["eto.login_response"])
        self.assertTrue(link.client.logged_in)
        self.assertTrue(link.exchange.logged_in)
        self.assertEqual(link.client.state.session_id, SESSION_ID)
        self.assertEqual((state.next_outgoing_seq, state.next_incoming_seq), (2, 2))
        self.assertEqual((link.exchange.state.next_outgoing_seq, link.exchange.state.next_incoming_seq), (2, 2))

    def test_login_response_reset_sets_the_outgoing_seq(self) -> None:
        link = Link()
        link.client.start_login(0.0, username="u", password="p")
        link.client_frames()
        response = session_message(eto_pb2.PAYLOAD_LOGIN_RESPONSE)
        response.eto_payload.seq = 1
        response.eto_payload.login_response.session = "s"
        response.eto_payload.login_response.reset = 7
        link.client.receive(response.SerializeToString(), 0.0)
        self.assertEqual(link.client.send(quote(1), 0.0), 7)

    def test_client_resume_resends_what_the_exchange_missed_and_asks_for_what_it_missed(self) -> None:
        link = established()
        # Client sends 2..4, the exchange only gets 2; exchange sends 2..4, the client only gets 2.
        for market in (2, 3, 4):
            link.client.send(quote(market), 0.0)
            link.exchange.send(quote(100 + market), 0.0)
        link.deliver_to_exchange(link.client_frames()[:1])
        link.deliver_to_client(link.exchange_frames()[:1])
        self.assertEqual(market_ids(link.exchange_delivered), [2])
        self.assertEqual(market_ids(link.client_delivered), [102])
        # The connection drops; both ends keep their state and start new Sessions.
        resumed = Link(link.client.state, link.exchange.state, now=5.0)
        response = resumed.login()
        login = resumed.client_sent[0]
        self.assertEqual(login.eto_payload.login.session, SESSION_ID)
        self.assertEqual(login.eto_payload.seq, 5)  # the client's next outgoing, not 1
        self.assertEqual(response.eto_payload.login_response.reset, 3)  # the exchange missed 3 and 4
        self.assertEqual(response.eto_payload.seq, 5)  # the exchange's own next seq: the client misses 3, 4
        resumed.pump()
        self.assertEqual(market_ids(resumed.exchange_delivered), [3, 4])
        self.assertEqual(market_ids(resumed.client_delivered), [103, 104])
        self.assertEqual([handler_name(p) for p in resumed.client_delivered][0], "eto.login_response")
        # Exactly one replay request, from the client, from 3; the exchange needed none.
        client_replays = [p for p in resumed.client_sent if p.eto_payload.type == eto_pb2.PAYLOAD_REPLAY]
        exchange_replays = [p for p in resumed.exchange_sent if p.eto_payload.type == eto_pb2.PAYLOAD_REPLAY]
        self.assertEqual([p.eto_payload.replay.seq for p in client_replays if not p.eto_payload.is_replay], [3])
        self.assertEqual([p for p in exchange_replays if not p.eto_payload.is_replay], [])
        # The client's resends are replays, and the login is gapfilled.
        resent = [describe(p) for p in resumed.client_sent if p.eto_payload.is_replay]
        self.assertEqual(
            resent[:3],
            [("seto.market_subscribe", 3, True), ("seto.market_subscribe", 4, True), ("eto.gapfill", 5, True)],
        )
        # Both ends agree on the numbers and the session carries on.
        self.assertEqual(resumed.client.state.next_outgoing_seq, resumed.exchange.state.next_incoming_seq)
        self.assertEqual(resumed.exchange.state.next_outgoing_seq, resumed.client.state.next_incoming_seq)
        resumed.client.send(quote(9), 5.0)
        resumed.exchange.send(quote(109), 5.0)
        resumed.pump()
        self.assertEqual(market_ids(resumed.exchange_delivered), [3, 4, 9])
        self.assertEqual(market_ids(resumed.client_delivered), [103, 104, 109])

    def test_resume_with_nothing_missed(self) -> None:
        link = established()
        link.client.send(quote(2), 0.0)
        link.exchange.send(quote(102), 0.0)
        link.pump()
        resumed = Link(link.client.state, link.exchange.state)
        resumed.login()
        resumed.pump()
        self.assertEqual([p for p in resumed.client_sent + resumed.exchange_sent if p.eto_payload.is_replay], [])
        self.assertEqual([handler_name(p) for p in resumed.client_delivered], ["eto.login_response"])
        self.assertEqual([handler_name(p) for p in resumed.exchange_delivered], [])


class SequenceScenarios(SynchronousTestCase):
    def test_seq_correct(self) -> None:
        link = established()
        for market in (1, 2, 3):
            link.exchange.send(quote(market), 0.0)
            link.client.send(quote(10 + market), 0.0)
        link.pump()
        self.assertEqual(market_ids(link.client_delivered), [1, 2, 3])
        self.assertEqual(market_ids(link.exchange_delivered), [11, 12, 13])
        self.assertEqual(link.client.state.next_incoming_seq, 5)
        self.assertEqual(link.exchange.state.next_incoming_seq, 5)
        self.assertEqual([p.eto_payload.seq for p in link.client_sent], [1, 2, 3, 4])

    def test_seq_too_high_one_replay_request_then_replayed_in_order(self) -> None:
        link = established()
        for market in range(2, 12):
            link.exchange.send(quote(market), 0.0)
        frames = link.exchange_frames()
        # Seqs 2 and 3 are lost; 4..11 arrive above the gap.
        self.assertEqual(link.deliver_to_client(frames[2:]), [])
        (request,) = payloads_of(link.client.data_to_send())
        self.assertEqual(request.eto_payload.type, eto_pb2.PAYLOAD_REPLAY)
        self.assertEqual(request.eto_payload.replay.seq, 2)
        # The exchange answers; everything arrives once, in order.
        link.exchange.receive(request.SerializeToString(), 0.0)
        replayed = link.exchange_frames()
        self.assertTrue(all(parse_payload(f).eto_payload.is_replay for f in replayed))
        link.deliver_to_client(replayed)
        self.assertEqual(market_ids(link.client_delivered), list(range(2, 12)))
        self.assertIsNone(link.client.replay_until)
        self.assertEqual(link.client.data_to_send(), b"")
        # And the session carries on.
        link.exchange.send(quote(12), 0.0)
        link.pump()
        self.assertEqual(market_ids(link.client_delivered), list(range(2, 13)))

    def test_unanswered_replay_request_is_asked_again_after_the_retry_time(self) -> None:
        link = established()
        for market in range(2, 8):
            link.exchange.send(quote(market), 0.0)
        frames = link.exchange_frames()
        retry = link.client.replay_retry
        # Seq 2 is lost and the peer never answers the request.
        for at, frame in zip((0.0, 1.0, retry - 0.01, retry + 0.5), frames[1:5], strict=True):
            link.client.receive(frame, at)
        requests = payloads_of(link.client.data_to_send())
        self.assertEqual([r.eto_payload.replay.seq for r in requests], [2, 2])
        self.assertEqual(link.client.replay_until, 6)

    def test_seq_too_low_without_is_replay_is_logged_and_ignored(self) -> None:
        link = established()
        for market in (2, 3, 4):
            link.exchange.send(quote(market), 0.0)
        frames = link.exchange_frames()
        link.deliver_to_client(frames)
        logs = LogCapture(self)
        self.assertEqual(link.client.receive(frames[1], 0.0), [])
        warnings = logs.at(LogLevel.warn)
        self.assertEqual(len(warnings), 1)
        # The type names what was ignored; the message itself is not dumped into the log.
        self.assertIn("seq 3 below the expected 5 without is_replay: seto.market_subscribe ignored", warnings[0])
        self.assertNotIn("market_id", warnings[0])
        self.assertEqual(market_ids(link.client_delivered), [2, 3, 4])
        self.assertEqual(link.client.state.next_incoming_seq, 5)
        self.assertEqual(link.client.data_to_send(), b"")

    def test_seq_too_low_warning_hides_secrets(self) -> None:
        link = established()
        logs = LogCapture(self)
        stale = session_message(eto_pb2.PAYLOAD_LOGIN_RESPONSE)
        stale.eto_payload.seq = 1
        stale.eto_payload.login_response.session = SESSION_ID
        self.assertEqual(link.client.receive(stale.SerializeToString(), 0.0), [])
        (warning,) = logs.at(LogLevel.warn)
        self.assertNotIn(SESSION_ID, warning)

    def test_replayed_duplicate_is_ignored_silently(self) -> None:
        link = established()
        link.exchange.send(quote(2), 0.0)
        (frame,) = link.exchange_frames()
        link.deliver_to_client([frame])
        duplicate = parse_payload(frame)
        duplicate.eto_payload.is_replay = True
        logs = LogCapture(self)
        self.assertEqual(link.client.receive(duplicate.SerializeToString(), 0.0), [])
        self.assertEqual(logs.at(LogLevel.warn), [])
        self.assertEqual(market_ids(link.client_delivered), [2])
        self.assertEqual(link.client.data_to_send(), b"")

    def test_gapfill_closes_a_gap(self) -> None:
        link = established()
        link.exchange.send_heartbeat(0.0)  # seq 2, lost
        link.exchange.send(quote(3), 0.0)  # seq 3
        frames = link.exchange_frames()
        link.deliver_to_client(frames[1:])
        link.pump()
        gapfills = [describe(p) for p in link.exchange_sent if p.eto_payload.type == eto_pb2.PAYLOAD_GAPFILL]
        self.assertEqual(gapfills, [("eto.gapfill", 2, True)])
        self.assertEqual(market_ids(link.client_delivered), [3])
        self.assertNotIn("eto.gapfill", [handler_name(p) for p in link.client_delivered])
        self.assertEqual(link.client.state.next_incoming_seq, 4)

    def test_gapfill_at_the_expected_seq_advances(self) -> None:
        link = established()
        gapfill = session_message(eto_pb2.PAYLOAD_GAPFILL)
        gapfill.eto_payload.seq = 2
        gapfill.eto_payload.is_replay = True
        self.assertEqual(link.client.receive(gapfill.SerializeToString(), 0.0), [])
        self.assertEqual(link.client.state.next_incoming_seq, 3)

    def test_parse_error_changes_nothing(self) -> None:
        link = Link(now=0.0)
        self.assertRaises(ParseError, link.client.receive, b"\xff\xff", 50.0)
        self.assertEqual(link.client.last_received, 0.0)
        self.assertEqual(link.client.state.next_incoming_seq, 1)
        self.assertEqual(link.client.data_to_send(), b"")


class ReplayScenarios(SynchronousTestCase):
    def test_replay_request_answered_with_a_mix_of_application_and_session_payloads(self) -> None:
        link = established()
        exchange = link.exchange
        exchange.send_heartbeat(0.0)  # 2
        exchange.send(quote(3), 0.0)  # 3
        exchange.send_ping(0.0)  # 4
        request = session_message(eto_pb2.PAYLOAD_REPLAY)
        request.eto_payload.replay.seq = 1
        exchange.send(request, 0.0)  # 5: a replay request of its own
        exchange.send(application_message("order_accepted", seq=2, order_id=9), 0.0)  # 6
        exchange.send_logout(0.0, eto_pb2.LOGOUT_DOWNTIME)  # 7
        originals = {p.eto_payload.seq: p for p in payloads_of(exchange.data_to_send())}
        ask = session_message(eto_pb2.PAYLOAD_REPLAY)
        ask.eto_payload.seq = link.exchange.state.next_incoming_seq
        ask.eto_payload.replay.seq = 1
        exchange.receive(ask.SerializeToString(), 0.0)
        replayed = payloads_of(exchange.data_to_send())
        self.assertEqual(
            [describe(p) for p in replayed],
            [
                ("eto.gapfill", 1, True),  # login_response
                ("eto.gapfill", 2, True),  # heartbeat
                ("seto.market_subscribe", 3, True),
                ("eto.ping", 4, True),
                ("eto.gapfill", 5, True),  # replay
                ("seto.order_accepted", 6, True),
                ("eto.logout", 7, True),
            ],
        )
        for payload in replayed:
            if payload.eto_payload.type != eto_pb2.PAYLOAD_GAPFILL:
                original = originals[payload.eto_payload.seq]
                original.eto_payload.is_replay = True
                self.assertEqual(payload, original)
        # Replaying sends nothing new: the outgoing seq is unchanged.
        self.assertEqual(exchange.state.next_outgoing_seq, 8)

    def test_client_answers_replay_requests_from_its_log(self) -> None:
        link = established()
        link.client.send(application_message("order_create", side=1, quantity=5, market_id=1, contract_id=2), 0.0)
        link.client.send_heartbeat(0.0)
        link.client_frames()
        ask = session_message(eto_pb2.PAYLOAD_REPLAY)
        ask.eto_payload.seq = 2
        ask.eto_payload.replay.seq = 1
        link.client.receive(ask.SerializeToString(), 0.0)
        replayed = payloads_of(link.client.data_to_send())
        self.assertEqual(
            [describe(p) for p in replayed],
            [("eto.gapfill", 1, True), ("seto.order_create", 2, True), ("eto.gapfill", 3, True)],
        )
        self.assertEqual(replayed[1].order_create.quantity, 5)
        # The login's password is not resent.
        self.assertNotIn(b"hunter2", b"".join(p.SerializeToString() for p in replayed))

    def test_simultaneous_replay_requests_both_ways(self) -> None:
        link = established()
        for market in (2, 3):
            link.client.send(quote(market), 0.0)
            link.exchange.send(quote(100 + market), 0.0)
        to_exchange = link.client_frames()
        to_client = link.exchange_frames()
        # Seq 2 is lost both ways; seq 3 opens a gap at each end.
        link.deliver_to_exchange(to_exchange[1:])
        link.deliver_to_client(to_client[1:])
        link.pump()
        self.assertEqual(market_ids(link.client_delivered), [102, 103])
        self.assertEqual(market_ids(link.exchange_delivered), [2, 3])
        for sent in (link.client_sent, link.exchange_sent):
            requests = [p for p in sent if p.eto_payload.type == eto_pb2.PAYLOAD_REPLAY and not p.eto_payload.is_replay]
            self.assertEqual([p.eto_payload.replay.seq for p in requests], [2])
        self.assertIsNone(link.client.replay_until)
        self.assertIsNone(link.exchange.replay_until)
        self.assertEqual(link.client.state.next_incoming_seq, link.exchange.state.next_outgoing_seq)
        self.assertEqual(link.exchange.state.next_incoming_seq, link.client.state.next_outgoing_seq)

    def test_replay_request_beyond_the_sent_log_is_gapfilled_with_a_warning(self) -> None:
        link = established(sent_log_size=3)
        for market in range(2, 8):
            link.client.send(quote(market), 0.0)  # 2..7; the log keeps 5, 6, 7
        link.client_frames()
        logs = LogCapture(self)
        ask = session_message(eto_pb2.PAYLOAD_REPLAY)
        ask.eto_payload.seq = 2
        ask.eto_payload.replay.seq = 2
        link.client.receive(ask.SerializeToString(), 0.0)
        replayed = payloads_of(link.client.data_to_send())
        self.assertEqual(
            [describe(p) for p in replayed],
            [("eto.gapfill", 2, True), ("eto.gapfill", 3, True), ("eto.gapfill", 4, True)]
            + [("seto.market_subscribe", seq, True) for seq in (5, 6, 7)],
        )
        warnings = logs.at(LogLevel.warn)
        self.assertEqual(len(warnings), 1)
        self.assertIn("reaches past the sent log", warnings[0])

    def test_replay_request_for_nothing_sent(self) -> None:
        link = established()
        logs = LogCapture(self)
        ask = session_message(eto_pb2.PAYLOAD_REPLAY)
        ask.eto_payload.seq = 2
        ask.eto_payload.replay.seq = 50
        link.client.receive(ask.SerializeToString(), 0.0)
        self.assertEqual(link.client.data_to_send(), b"")
        self.assertEqual(len(logs.at(LogLevel.warn)), 1)

    def test_replay_request_across_a_reset_jump_is_a_sequence_error(self) -> None:
        # An exchange that says it expects seq 2**40 next and then asks for seq 1
        # cannot be answered (one gapfill per skipped seq would never end).
        link = Link()
        link.client.start_login(0.0, username="u", password="p")
        link.client_frames()
        response = session_message(eto_pb2.PAYLOAD_LOGIN_RESPONSE)
        response.eto_payload.seq = 1
        response.eto_payload.login_response.session = "s"
        response.eto_payload.login_response.reset = 2**40
        link.client.receive(response.SerializeToString(), 0.0)
        ask = session_message(eto_pb2.PAYLOAD_REPLAY)
        ask.eto_payload.seq = 2
        ask.eto_payload.replay.seq = 1
        self.assertRaises(SequenceError, link.client.receive, ask.SerializeToString(), 0.0)
        # What was sent after the jump can still be replayed.
        link.client.send(quote(1), 0.0)
        link.client.data_to_send()
        ask.eto_payload.seq = 3
        ask.eto_payload.replay.seq = 2**40
        link.client.receive(ask.SerializeToString(), 0.0)
        (replayed,) = payloads_of(link.client.data_to_send())
        self.assertEqual(describe(replayed), ("seto.market_subscribe", 2**40, True))

    def test_outgoing_seq_beyond_uint64_is_a_sequence_error(self) -> None:
        session = Session(SessionState(), Role.CLIENT, now=0.0)
        session.state.next_outgoing_seq = 2**64 - 1
        self.assertEqual(session.send_heartbeat(0.0), 2**64 - 1)
        self.assertRaises(SequenceError, session.send_heartbeat, 0.0)
        self.assertEqual(len(payloads_of(session.data_to_send())), 1)

    def test_ping_above_a_gap_is_answered_once_replayed(self) -> None:
        link = established()
        link.client.send(quote(2), 0.0)
        link.client.send_ping(0.0)
        frames = link.client_frames()
        link.deliver_to_exchange(frames[1:])  # seq 2 lost, the ping (3) arrives above the gap
        link.pump()
        pongs = [p for p in link.exchange_sent if p.eto_payload.type == eto_pb2.PAYLOAD_PONG]
        self.assertEqual(len(pongs), 1)
        self.assertEqual(
            ["eto.pong"], [handler_name(p) for p in link.client_delivered if handler_name(p) == "eto.pong"]
        )


class LogoutScenarios(SynchronousTestCase):
    def test_logout_with_each_reason(self) -> None:
        reasons = eto_pb2.LogoutReason.DESCRIPTOR.values
        self.assertEqual(len(reasons), 10)
        for reason in reasons:
            link = established()
            link.exchange.send_logout(0.0, reason.number)
            self.assertFalse(link.exchange.logged_in)
            link.pump()
            (logout,) = link.client_delivered[1:]
            self.assertEqual(handler_name(logout), "eto.logout", reason.name)
            self.assertEqual(logout.eto_payload.logout.reason, reason.number, reason.name)
            self.assertFalse(link.client.logged_in, reason.name)

    def test_clean_logout_is_confirmed(self) -> None:
        link = established()
        link.client.send_logout(0.0)
        self.assertFalse(link.client.logged_in)
        (logout,) = link.deliver_to_exchange(link.client_frames())
        self.assertEqual(logout.eto_payload.logout.reason, eto_pb2.LOGOUT_NONE)
        link.exchange.send_logout(0.0, eto_pb2.LOGOUT_CONFIRMATION)
        (confirmation,) = link.deliver_to_client(link.exchange_frames())
        self.assertEqual(confirmation.eto_payload.logout.reason, eto_pb2.LOGOUT_CONFIRMATION)

    def test_refused_login_logout_at_seq_one(self) -> None:
        link = Link()
        link.client.start_login(0.0, username="user", password="wrong")
        link.client_frames()
        refusal = Session(SessionState(), Role.EXCHANGE, now=0.0)
        refusal.send_logout(0.0, eto_pb2.LOGOUT_UNAUTHORISED)
        (logout,) = link.deliver_to_client(frames_of(refusal.data_to_send()))
        self.assertEqual(logout.eto_payload.logout.reason, eto_pb2.LOGOUT_UNAUTHORISED)
        self.assertFalse(link.client.logged_in)

    def test_refused_resume_logout_at_seq_one_is_delivered(self) -> None:
        link = established()
        for market in range(2, 6):
            link.exchange.send(quote(market), 0.0)
        link.pump()
        resumed = Link(link.client.state, SessionState())
        resumed.client.start_login(0.0, username="user", password="p")
        resumed.client_frames()
        refusal = Session(SessionState(), Role.EXCHANGE, now=0.0)
        refusal.send_logout(0.0, eto_pb2.LOGOUT_UNKNOWN_SESSION)
        (logout,) = resumed.deliver_to_client(frames_of(refusal.data_to_send()))
        self.assertEqual(logout.eto_payload.logout.reason, eto_pb2.LOGOUT_UNKNOWN_SESSION)


class LivenessScenarios(SynchronousTestCase):
    def test_next_check_zero_means_something_is_due_despite_float_rounding(self) -> None:
        # now - last_sent is 4.999999999999996 here, but last_sent + 5.0 - now rounds to 0.
        last_sent, now = 60.050000000000274, 65.05000000000027
        session = Session(SessionState(), Role.EXCHANGE, now=last_sent, heartbeat_interval=5.0, peer_timeout=30.0)
        session.logged_in = True
        self.assertTrue(session.next_check(now) > 0 or session.heartbeat_due(now))
        for step in range(1, 2000):
            at = last_sent + step * 0.0025
            if session.next_check(at) == 0:
                self.assertTrue(session.heartbeat_due(at) or session.peer_silent(at), at)

    def test_heartbeat_is_answered_by_the_client(self) -> None:
        link = established()
        link.exchange.send_heartbeat(0.0)
        (delivered,) = link.deliver_to_client(link.exchange_frames())
        self.assertEqual(handler_name(delivered), "eto.heartbeat")
        (answer,) = payloads_of(link.client.data_to_send())
        self.assertEqual(describe(answer), ("eto.heartbeat", 2, False))

    def test_heartbeat_is_not_answered_by_the_exchange(self) -> None:
        link = established()
        link.client.send_heartbeat(0.0)
        (delivered,) = link.deliver_to_exchange(link.client_frames())
        self.assertEqual(handler_name(delivered), "eto.heartbeat")
        self.assertEqual(link.exchange.data_to_send(), b"")

    def test_ping_is_answered_with_pong_both_ways(self) -> None:
        link = established()
        link.client.send_ping(0.0)
        link.exchange.send_ping(0.0)
        link.pump()
        self.assertIn("eto.pong", [handler_name(p) for p in link.client_delivered])
        self.assertIn("eto.pong", [handler_name(p) for p in link.exchange_delivered])
        # A pong is not answered.
        self.assertEqual(link.client.state.next_outgoing_seq, 4)
        self.assertEqual(link.exchange.state.next_outgoing_seq, 4)

    def test_heartbeat_due_peer_silent_next_check(self) -> None:
        session = Session(SessionState(), Role.CLIENT, now=100.0, heartbeat_interval=10.0, peer_timeout=30.0)
        # Before the login completes only the peer's silence is timed.
        self.assertEqual(session.next_check(100.0), 30.0)
        session.logged_in = True
        self.assertEqual(session.next_check(100.0), 10.0)
        self.assertFalse(session.heartbeat_due(109.5))
        self.assertTrue(session.heartbeat_due(110.0))
        session.send_heartbeat(105.0)
        self.assertFalse(session.heartbeat_due(114.0))
        self.assertTrue(session.heartbeat_due(115.0))
        self.assertEqual(session.next_check(106.0), 9.0)
        self.assertFalse(session.peer_silent(129.5))
        self.assertTrue(session.peer_silent(130.0))
        heartbeat = session_message(eto_pb2.PAYLOAD_HEARTBEAT)
        heartbeat.eto_payload.seq = 1
        session.receive(heartbeat.SerializeToString(), 120.0)  # answered at 120, too
        self.assertFalse(session.peer_silent(149.0))
        self.assertTrue(session.peer_silent(150.0))
        self.assertEqual(session.next_check(125.0), 5.0)
        self.assertEqual(session.next_check(200.0), 0.0)

    def test_even_a_duplicate_shows_the_peer_is_alive(self) -> None:
        session = Session(SessionState(), Role.CLIENT, now=0.0, peer_timeout=30.0)
        session.state.next_incoming_seq = 10
        stale = session_message(eto_pb2.PAYLOAD_GAPFILL)
        stale.eto_payload.seq = 3
        stale.eto_payload.is_replay = True
        session.receive(stale.SerializeToString(), 25.0)
        self.assertFalse(session.peer_silent(40.0))


class StateTests(SynchronousTestCase):
    def test_session_state_repr_hides_the_session_id(self) -> None:
        link = established()
        text = repr(link.client.state)
        self.assertNotIn(SESSION_ID, text)
        self.assertIn("session=yes", text)
        self.assertIn("next_outgoing_seq=2", text)
        self.assertNotIn(SESSION_ID, str(link.client.state))

    def test_reset_forgets_the_session(self) -> None:
        link = established()
        state = link.client.state
        state.reset()
        self.assertEqual(
            (state.session_id, state.next_outgoing_seq, state.next_incoming_seq, len(state.sent)), (None, 1, 1, 0)
        )

    def test_sent_log_is_bounded(self) -> None:
        state = SessionState(sent_log_size=2)
        session = Session(state, Role.CLIENT, now=0.0)
        for market in range(5):
            session.send(quote(market), 0.0)
        self.assertEqual(len(state.sent), 2)
        self.assertEqual(state.sent.first_seq, 4)
        self.assertIsNone(state.sent.get(3))
        self.assertEqual(parse_payload(state.sent.get(5)).market_subscribe.market_id, 4)

    def test_sent_log_does_not_keep_the_password(self) -> None:
        session = Session(SessionState(), Role.CLIENT, now=0.0)
        session.start_login(0.0, username="user", password="hunter2-secret")
        self.assertNotIn(b"hunter2-secret", session.state.sent.get(1))
