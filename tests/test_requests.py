"""PendingRequests: settling in any order, and nothing left for the cyclic GC."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted import errors
from smarkets_twisted.proto import seto_pb2
from smarkets_twisted.requests import PendingRequests
from tests.test_client import result_of


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def accepted(seq: int) -> Any:
    return seto_pb2.OrderAccepted(seq=seq, order_id=seq * 10)


class PendingRequestsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.pending = PendingRequests(self.clock)

    def order(self, seq: int, timeout: float | None = None) -> Deferred[Any]:
        request = self.pending.add(object(), lambda s: (("order", s),), timeout)
        taken = self.pending.next_unsent()
        self.assertIs(taken, request)
        self.pending.sent(request, seq)
        return request.deferred

    def assert_freed_by_refcounting(self, settle: Any) -> None:
        """Once settled and dropped, a request's Deferred is freed at once, not left
        in a cycle for the cyclic GC: memory stays bounded by what is pending."""
        with no_cyclic_gc():
            deferred = self.order(7, timeout=30.0)
            deferred.addErrback(lambda failure: None)
            gone = weakref.ref(deferred)
            settle(deferred)
            del deferred
            self.assertIsNone(gone())
        self.assertEqual(len(self.pending), 0)

    def test_answered_request_is_freed(self) -> None:
        self.assert_freed_by_refcounting(lambda d: self.pending.answer("seto.order_accepted", accepted(7)))

    def test_cancelled_request_is_freed(self) -> None:
        self.assert_freed_by_refcounting(lambda d: d.cancel())

    def test_timed_out_request_is_freed(self) -> None:
        self.assert_freed_by_refcounting(lambda d: self.clock.advance(30.0))

    def test_cancelling_queued_requests_newest_first_keeps_the_order_of_the_rest(self) -> None:
        requests = [self.pending.add(n, None, None) for n in range(10)]
        outcomes = [result_of(r.deferred) for r in requests]
        for request in reversed(requests[5:]):
            request.deferred.cancel()
        for request in requests[1:5:2]:
            request.deferred.cancel()
        self.assertEqual([r.payload for r in self.pending.unsent], [0, 2, 4])
        self.assertEqual(len(self.pending), 3)
        for outcome in outcomes[5:] + outcomes[1:5:2]:
            self.assertIsInstance(outcome[0].value, CancelledError)
            self.assertIs(outcome[0].value.sent, False)  # dropped from the queue: it never goes out

    def test_a_shared_key_is_answered_oldest_first_skipping_the_settled(self) -> None:
        sent, deferreds = [], []
        for seq in (1, 2, 3):
            request = self.pending.add(object(), lambda s: (("cancel_all",),), None)
            self.pending.next_unsent()
            self.pending.sent(request, seq)
            sent.append(result_of(request.deferred))
            deferreds.append(request.deferred)
        deferreds[0].cancel()
        self.assertIs(sent[0][0].value.sent, True)
        answer = seto_pb2.OrderCancelAllAccepted()
        self.assertTrue(self.pending.answer("seto.order_cancel_all_accepted", answer))
        self.assertEqual((sent[1], sent[2]), ([answer], []))
        self.assertTrue(self.pending.answer("seto.order_cancel_all_accepted", answer))
        self.assertEqual(sent[2], [answer])
        self.assertFalse(self.pending.answer("seto.order_cancel_all_accepted", answer))
        self.assertEqual(len(self.pending), 0)

    def test_fail_gives_each_request_its_sent_flag(self) -> None:
        in_flight = result_of(self.order(4))
        unsent = result_of(self.pending.add(object(), None, None).deferred)
        self.pending.fail(errors.SessionLost("gone"))
        self.assertEqual((unsent[0].value.sent, in_flight[0].value.sent), (False, True))
        self.assertEqual(len(self.pending), 0)
