"""dataReceived's common-case branch does what the Session's general path does.

A logged-in client is fed streams of application and session payloads at
seqs in order, repeated, replayed and beyond gaps, cut into random chunks;
a bare Session (the same state, fed frame by frame) is the reference.  Both
must deliver the same payloads in the same order, write the same bytes and
end expecting the same seq.
"""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.framing import Deframer, encode_frame
from smarkets_twisted.payloads import Payload, application_message, name_and_body, session_message
from smarkets_twisted.proto import eto_pb2
from smarkets_twisted.session import Role, Session
from tests.scripted import ScriptedExchange, make_factory
from tests.test_fuzz import chunked

STREAMS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_KINDS = ["quotes", "accepted", "heartbeat", "gapfill", "ping"]


def _payload(kind: str, number: int) -> Payload:
    if kind == "quotes":
        return application_message("contract_quotes", market_id=100, contract_id=number)
    if kind == "accepted":
        return application_message("order_accepted", seq=number, order_id=number)
    return session_message(getattr(eto_pb2, f"PAYLOAD_{kind.upper()}"))


@st.composite
def streams(draw: st.DrawFn, first_seq: int) -> bytes:
    """Frames numbered mostly in order, with repeats, replays and gaps."""
    frames = []
    seq = first_seq
    for number in range(draw(st.integers(1, 30))):
        payload = _payload(draw(st.sampled_from(_KINDS)), number)
        step = draw(st.sampled_from([0, 0, 0, 0, -1, -2, 1, 2]))
        payload.eto_payload.seq = max(1, seq + step)
        if step < 0 or draw(st.integers(0, 9)) == 0:
            payload.eto_payload.is_replay = True
        if step >= 0:
            seq = payload.eto_payload.seq + 1
        frames.append(encode_frame(payload.SerializeToString()))
    return b"".join(frames)


class FastPathTests(SynchronousTestCase):
    @STREAMS
    @given(data=st.data(), cuts=st.lists(st.integers(0, 10_000), max_size=12))
    def test_data_received_delivers_what_the_session_does(self, data: st.DataObject, cuts: list[int]) -> None:
        clock = Clock()
        exchange = ScriptedExchange(clock)
        factory = make_factory(clock)
        protocol = exchange.connect(factory)
        exchange.accept_login()
        assert exchange.transport is not None and protocol.session is not None
        exchange.transport.clear()
        delivered: list[tuple[str, bytes]] = []
        factory.add_global_handler(lambda name, message: delivered.append((name, message.SerializeToString())))
        reference = Session(copy.deepcopy(factory.state), Role.CLIENT, now=clock.seconds())
        reference.logged_in = True
        stream = data.draw(streams(factory.state.next_incoming_seq))

        for chunk in chunked(stream, cuts):
            protocol.dataReceived(chunk)

        expected = []
        for frame in Deframer().feed(stream):
            for payload in reference.receive(frame, clock.seconds()):
                name, body = name_and_body(payload)
                expected.append((name, body.SerializeToString()))
        self.assertTrue(protocol.is_connected)
        self.assertEqual(delivered, expected)
        self.assertEqual(exchange.transport.value(), reference.data_to_send())
        self.assertEqual(factory.state.next_incoming_seq, reference.state.next_incoming_seq)
        self.assertEqual(protocol.session.replay_until, reference.replay_until)
