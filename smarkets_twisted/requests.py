"""Requests awaiting the exchange's answer, and how answers find them.

Modelled on AMP's tag → Deferred table, keyed by what the exchange echoes:
the seq of an order_create, the client reference this library puts on every
other request, or (for an exchange that does not echo references) the order
id, market id, or arrival order.  Each request's Deferred fires exactly once:
with the answer, a typed error, a timeout, or a cancellation.  The table
belongs to the factory, so that a reconnect does not lose it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from smarkets_twisted import errors
from smarkets_twisted.payloads import enum_name
from smarkets_twisted.proto import seto_pb2

Key = Hashable


def _rejection(error: type[errors.RequestRejected], enum: Any) -> Callable[[Any], Exception]:
    return lambda message: error(message.reason, enum_name(enum, message.reason), message)


def _invalid(message: Any) -> Exception:
    names = [enum_name(seto_pb2.OrderInvalidReason, reason) for reason in message.reasons]
    return errors.OrderInvalid(list(message.reasons), names, message)


def _by_reference(fallback: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], Key]:
    """The echoed reference with the fallback key (the request and its order), else the fallback key.

    The reference alone would not do: a caller's reference may be an order's
    too, and the exchange echoes an order's own on a cancellation nobody asked for.
    Nor would the seq alone: a new session's account replay repeats the last
    session's order answers, whose seqs started from 1 too.
    """
    return lambda m: (m.reference, *fallback(m)) if m.HasField("reference") else fallback(m)


#: handler name → (key of the request it answers, None for success or the error it raises).
ANSWERS: dict[str, tuple[Callable[[Any], Key], Callable[[Any], Exception] | None]] = {
    "seto.order_accepted": (_by_reference(lambda m: ("order", m.seq)), None),
    "seto.order_rejected": (
        _by_reference(lambda m: ("order", m.seq)),
        _rejection(errors.OrderRejected, seto_pb2.OrderRejectedReason),
    ),
    "seto.order_invalid": (_by_reference(lambda m: ("order", m.seq)), _invalid),
    "seto.order_cancelled": (_by_reference(lambda m: ("cancel", m.order_id)), None),
    "seto.order_cancel_rejected": (
        _by_reference(lambda m: ("cancel", m.order_id)),
        _rejection(errors.CancelRejected, seto_pb2.OrderCancelRejectedReason),
    ),
    "seto.order_cancel_all_accepted": (_by_reference(lambda m: ("cancel_all",)), None),
    "seto.order_cancel_all_rejected": (
        _by_reference(lambda m: ("cancel_all",)),
        _rejection(errors.CancelAllRejected, seto_pb2.OrderCancelAllRejectedReason),
    ),
    "seto.order_quantity_reduced": (_by_reference(lambda m: ("reduce", m.order_id)), None),
    "seto.order_quantity_reduce_rejected": (
        _by_reference(lambda m: ("reduce", m.order_id)),
        _rejection(errors.ReduceRejected, seto_pb2.OrderQuantityReduceRejectedReason),
    ),
    "seto.order_cancel_replace_accepted": (_by_reference(lambda m: ("replace", m.orig_order_id)), None),
    "seto.order_cancel_replace_rejected": (
        _by_reference(lambda m: ("replace", m.orig_order_id)),
        _rejection(errors.ReplaceRejected, seto_pb2.OrderCancelReplaceRejectedReason),
    ),
    "seto.market_quotes": (lambda m: ("subscribe", m.market_id), None),
    "seto.settings_accepted": (lambda m: ("settings",), None),
}


class Request:
    """One request: its Deferred, and its payload until it is sent."""

    __slots__ = ("deferred", "keys", "keys_for_seq", "payload", "seq", "timeout_call")

    def __init__(self, payload: Any, keys: Callable[[int], tuple[Key, ...]] | None) -> None:
        self.payload = payload
        #: Until it is sent: turns the seq the payload was sent at into the keys
        #: its answer may carry; None for a request answered as soon as it is sent.
        self.keys_for_seq = keys
        self.keys: tuple[Key, ...] = ()
        self.seq: int | None = None
        self.timeout_call: IDelayedCall | None = None
        self.deferred: Deferred[Any]


class PendingRequests:
    """Requests not yet sent (in order) and requests sent awaiting an answer.

    Settling any request (answered, cancelled, timed out, in any order) costs
    the same whatever else is pending, so work stays linear in the number of
    requests: the queues are OrderedDicts used as ordered sets.  Most keys are
    awaited by one request (an order's seq, a reference), held alone, without
    a queue: a request allocates little, which keeps the cyclic GC quiet.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        #: Requests to send, oldest first (the values are unused).
        self.unsent: OrderedDict[Request, None] = OrderedDict()
        #: key → the request awaiting an answer with it or, when several do
        #: (cancel_all, settings), all of them, oldest first.
        self._awaiting: dict[Key, Request | OrderedDict[Request, None]] = {}
        #: Every request not settled, by its Deferred (which a cancellation names).
        self._pending: dict[Deferred[Any], Request] = {}
        # One canceller for every Deferred, rather than a closure per request.
        self._canceller = self._cancel

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, payload: Any, keys: Callable[[int], tuple[Key, ...]] | None, timeout: float | None) -> Request:
        """Queue a request to be sent; its Deferred can be cancelled and may time out."""
        request = Request(payload, keys)
        deferred: Deferred[Any] = Deferred(self._canceller)
        request.deferred = deferred
        self._pending[deferred] = request
        if timeout is not None:
            request.timeout_call = self.clock.callLater(timeout, self._time_out, request)
        self.unsent[request] = None
        return request

    def next_unsent(self) -> Request:
        """Take the oldest request still to be sent (there must be one)."""
        return self.unsent.popitem(last=False)[0]

    def sent(self, request: Request, seq: int) -> None:
        """Record that ``request`` went out at ``seq``; it now awaits its answer."""
        request.seq = seq
        request.payload = None
        if request.keys_for_seq is None:
            self._settle(request)
            request.deferred.callback(None)
            return
        # The keys are known: what made them (often a closure) is not kept while the answer is awaited.
        request.keys, request.keys_for_seq = request.keys_for_seq(seq), None
        awaiting = self._awaiting
        for key in request.keys:
            waiting = awaiting.get(key)
            if waiting is None:
                awaiting[key] = request
            elif isinstance(waiting, Request):
                awaiting[key] = OrderedDict(((waiting, None), (request, None)))
            else:
                waiting[request] = None

    def not_sent(self, request: Request, error: Exception) -> None:
        """Fail a request taken from the queue that could not be sent."""
        self._settle(request)
        request.deferred.errback(error)

    def answer(self, name: str, message: Any) -> bool:
        """Fire the request that ``message`` answers, if any; True when one fired."""
        rule = ANSWERS.get(name)
        if rule is None:
            return False
        key_of, error_of = rule
        waiting = self._awaiting.get(key_of(message))
        if waiting is None:
            return False
        request = waiting if isinstance(waiting, Request) else next(iter(waiting))
        self._settle(request)
        if error_of is None:
            request.deferred.callback(message)
        else:
            request.deferred.errback(error_of(message))
        return True

    def fail(self, error: Exception, seqs: range | None = None) -> None:
        """Fail every request (or those sent at ``seqs``): their session is gone.

        A SessionLost is given to each request with its own ``sent`` flag,
        unless the error already says.
        """
        in_flight = [r for r in self._pending.values() if r.seq is not None and (seqs is None or r.seq in seqs)]
        requests = sorted(in_flight, key=lambda r: r.seq or 0)
        if seqs is None:
            requests = list(self.unsent) + requests
        for request in requests:
            self._settle(request)
            if isinstance(error, errors.SessionLost):
                sent = error.sent if error.sent is not None else request.seq is not None
                request.deferred.errback(errors.SessionLost(str(error), sent=sent))
            else:
                request.deferred.errback(error)

    def _settle(self, request: Request) -> None:
        """Remove a request from every table and stop its timer."""
        if request.timeout_call is not None and request.timeout_call.active():
            request.timeout_call.cancel()
        request.timeout_call = None
        self._pending.pop(request.deferred, None)
        if request.seq is None:
            self.unsent.pop(request, None)
            return
        awaiting = self._awaiting
        for key in request.keys:
            waiting = awaiting.get(key)
            if waiting is request:
                del awaiting[key]
            elif isinstance(waiting, OrderedDict):
                waiting.pop(request, None)
                if not waiting:
                    del awaiting[key]

    def _cancel(self, deferred: Deferred[Any]) -> None:
        """The canceller of every request's Deferred: settle the request it belongs to.

        The error says whether the request had gone out, so that an order
        dropped from the queue is known never to reach the exchange.
        """
        request = self._pending.get(deferred)
        if request is not None:
            self._settle(request)
            deferred.errback(errors.RequestCancelled(sent=request.seq is not None))

    def _time_out(self, request: Request) -> None:
        request.timeout_call = None
        sent = request.seq is not None
        self._settle(request)
        request.deferred.errback(errors.RequestTimeout(sent=sent))
