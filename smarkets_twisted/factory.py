"""SmarketsClientFactory: the client's session across connections.

It holds what one connection must not lose: the credentials, the Session
state (session id, seqs, the log of what was sent), requests awaiting
answers, the throttle queue, handlers, subscriptions and the account
sequence, and the trading layer's books, orders and positions kept from
what the exchange says.  Each protocol it builds logs in at once, resuming
the session when there is one; reconnecting is the job of a ClientService
around it.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import ClientFactory
from twisted.logger import Logger

from smarkets_twisted import errors
from smarkets_twisted.handlers import ClientListener, GlobalHandler, Handler, HandlerRegistry
from smarkets_twisted.lifecycle import Intent
from smarkets_twisted.payloads import SETO_FIELDS, Payload, application_message, name_and_body
from smarkets_twisted.pings import Pings
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.protocol import SmarketsClientProtocol, with_timeout
from smarkets_twisted.requests import ANSWERS, Key, PendingRequests
from smarkets_twisted.session import SessionState
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.throttle import TokenBucket
from smarkets_twisted.trading.account import AccountPositions
from smarkets_twisted.trading.books import Books
from smarkets_twisted.trading.orders import Order, Orders, OrderState
from smarkets_twisted.trading.prices import MAX_PRICE, MIN_PRICE
from smarkets_twisted.wording import counted

if TYPE_CHECKING:
    from smarkets_twisted.journal import Journal

#: How long a new session waits for throttle_limits_changed before sending anyway.
LIMITS_WAIT = 2.0

#: Ticks a payload may take to reach the exchange: refills meanwhile may be lost to its full bucket.
THROTTLE_HEADROOM = 2

#: Login refusals after which trying again cannot help.
_FINAL_LOGIN_REFUSALS = frozenset({eto_pb2.LOGOUT_UNAUTHORISED, eto_pb2.LOGOUT_UNVERIFIED})


class _Route(NamedTuple):
    """What the factory does with one seto payload type, worked out once from the schema."""

    #: The handler name: 'seto.contract_quotes'.
    name: str
    #: The Payload field carrying the body handlers get.
    field: str
    #: Whether the body reports the account sequence.
    account_sequenced: bool
    #: Whether it may answer a pending request (market data never does).
    answers: bool


def _reports_account_sequence(field: str) -> bool:
    body = seto_pb2.Payload.DESCRIPTOR.fields_by_name[field].message_type
    return body is not None and "account_sequence_64" in body.fields_by_name


#: seto payload type → its route; session payloads (seto type ETO) have none.
_ROUTES = {
    number: _Route(f"seto.{field}", field, _reports_account_sequence(field), f"seto.{field}" in ANSWERS)
    for number, field in SETO_FIELDS.items()
}


_P = ParamSpec("_P")


def _invalid_fails(request: Callable[_P, Deferred[Any]]) -> Callable[_P, Deferred[Any]]:
    """A request given a value its field cannot carry fails its Deferred: nothing queued, nothing sent.

    (Its payload is built before anything is queued: raising there leaves no trace.)
    """

    @functools.wraps(request)
    def checked(*args: _P.args, **kwargs: _P.kwargs) -> Deferred[Any]:
        try:
            return request(*args, **kwargs)
        except errors.InvalidRequest as e:
            return fail(e)

    return checked


def _wire_price(price: int) -> int:
    """Protobuf takes any uint32; the exchange only percent odds in basis points (PROTOCOL.md)."""
    if type(price) is int and not MIN_PRICE <= price <= MAX_PRICE:
        raise errors.InvalidRequest(f"price {price} is not a wire price in {MIN_PRICE}..{MAX_PRICE}", "price")
    return price


class SmarketsClientFactory(ClientFactory):
    """Builds SmarketsClientProtocols and offers the Deferred API."""

    log = Logger()
    protocol = SmarketsClientProtocol  # type: ignore[assignment]
    #: No "Starting factory <...>" line at each connection: the protocol says what happens.
    noisy = False

    def __init__(self, config: ClientSettings, clock: IReactorTime | None = None) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.config = config
        self.clock = clock
        self.state = SessionState(config.sent_log_size)
        self.requests = PendingRequests(clock)
        self.pings = Pings(clock)
        self.handlers = HandlerRegistry()
        self.bucket = TokenBucket()
        #: The highest account sequence seen, sent at a new session's login.
        self.account_sequence: int | None = config.account_sequence
        # From a new session's login to its first account event (resumes between included):
        # whether that event may show the exchange renumbered them.
        self._new_session = False
        #: Markets subscribed to, renewed when a new session has to be started.
        self.subscriptions: set[int] = set()
        #: The logged-in protocol, if any.
        self.current: SmarketsClientProtocol | None = None
        self._connection: SmarketsClientProtocol | None = None
        self._login_waiters: list[Deferred[SmarketsClientProtocol]] = []
        self._cancel_all_on_failure: bool | None = None
        self._pump_call: IDelayedCall | None = None
        self._limits_wait: IDelayedCall | None = None
        #: Payloads sent or resent since this connection's login, until its
        #: throttle_limits_changed arrives (None after).
        self._spent_since_login: int | None = None
        self._pumping = False
        # Client references tag every request the exchange answers by reference;
        # a random start keeps them apart from another process's on the same account.
        self._references = itertools.count(random.SystemRandom().getrandbits(31) << 32)
        self.intent = Intent.WANTED
        #: Where every payload in and out is recorded, if anywhere (`smarkets_twisted.journal`).
        self.journal: Journal | None = None
        #: Why the session ended for good (logout, stop, a login refused for
        #: good) while `intent` is ENDED; None otherwise.
        self.ended: errors.SmarketsError | None = None
        #: Called with that reason when it happens (the service stops reconnecting).
        self.on_ended: Callable[[errors.SmarketsError], object] | None = None
        #: Called with the account sequence of the last account event in a chunk
        #: of data received, once the handlers of all of it ran (a state file
        #: saves it: once a read, not once an event).
        self.on_account_event: Callable[[int], object] | None = None
        self._reported_account_sequence = config.account_sequence
        #: The trading layer, kept from what the exchange says (`smarkets_twisted.trading`).
        self.books = Books(self.handlers, self.subscriptions, self._refresh_books)
        self.orders = Orders(self.handlers)
        self.orders.account_sequence = config.account_sequence
        self.positions = AccountPositions(self.handlers, self.orders, self.books)

    def references_from(self, start: int) -> None:
        """Number the client references of requests from ``start`` (a replay takes the recording's)."""
        self._references = itertools.count(start)

    def __repr__(self) -> str:
        return f"<SmarketsClientFactory user={self.config.username!r} {self.state!r}>"

    # Handlers (the reference client's API)

    def add_handler(self, name: str, handler: Handler, whole_payload: bool = False) -> None:
        """Call ``handler(message)`` for each message ``name``; ``whole_payload``: the reference client's shape."""
        self.handlers.add_handler(name, handler, whole_payload)

    def del_handler(self, name: str, handler: Handler) -> None:
        self.handlers.del_handler(name, handler)

    def add_global_handler(self, handler: GlobalHandler, whole_payload: bool = False) -> None:
        self.handlers.add_global_handler(handler, whole_payload)

    def del_global_handler(self, handler: GlobalHandler) -> None:
        self.handlers.del_global_handler(handler)

    def add_listener(self, listener: ClientListener) -> None:
        """Hear of logins, lost connections and ended sessions (`handlers.ClientListener`)."""
        self.handlers.add_listener(listener)

    def del_listener(self, listener: ClientListener) -> None:
        self.handlers.del_listener(listener)

    # Session lifecycle

    def buildProtocol(self, addr: IAddress | None) -> SmarketsClientProtocol:  # type: ignore[override]
        protocol = self.protocol()
        protocol.factory = self
        self._connection = protocol
        self.intent = Intent.WANTED
        self.ended = None
        return protocol

    def whenLoggedIn(self, timeout: float | None = None) -> Deferred[SmarketsClientProtocol]:
        """A new Deferred for the current, or next, logged-in protocol.

        Fails with the reason (SessionLost, LoginError) when the session has
        ended for good, or does so before the next login: after a logout, a
        stop, or a login refused for good.
        """
        if self.current is not None:
            return succeed(self.current)
        if self.ended is not None:
            return fail(self.ended)
        deferred: Deferred[SmarketsClientProtocol] = Deferred(lambda d: self._login_waiters.remove(d))
        self._login_waiters.append(deferred)
        return with_timeout(deferred, timeout, self.clock)

    def login(self) -> Deferred[Any]:
        """The LoginResponse of the connection logging in now (or LoginError)."""
        if self._connection is None:
            return fail(errors.NotLoggedIn("not connected"))
        return self._connection.login()

    def logout(self, timeout: float | None = None) -> Deferred[None]:
        """Log out cleanly and end the session; pending requests fail with SessionLost.

        Nothing still queued goes out behind the logout (see `_pump`).  Fires
        once the exchange confirmed and closed; fails with LogoutUnconfirmed
        (a SocketDisconnected) if the connection was lost or dropped first
        (the session is ended here all the same).  Fires at once when the
        session has ended already.
        """
        if self.intent is Intent.ENDED:
            return succeed(None)
        if self._connection is not None and self._connection.is_connected:
            self.intent = Intent.LOGGING_OUT
            return with_timeout(self._connection.send_logout(), timeout, self.clock)
        self._end_for_good(errors.SessionLost("logged out"), logged_out=True)
        return succeed(None)

    def ping(self, timeout: float | None = None) -> Deferred[float]:
        """Round-trip time to the exchange, in seconds, from when the ping goes out to its pong.

        Like a request, a ping waits for a throttle token (the exchange would
        not answer one beyond its throttle, and the next pong would be taken
        for its) and survives a reconnect (its pong may come on the next
        connection); it fails with SessionLost when the session ends and with
        RequestTimeout after ``timeout`` (default ``ClientSettings.ping_timeout``)
        seconds, counted from this call.
        """
        if self.current is None:
            return fail(errors.NotLoggedIn("ping needs a logged-in connection"))
        pinged = self.pings.asked()
        self._pump()
        return with_timeout(pinged, timeout if timeout is not None else self.config.ping_timeout, self.clock)

    def account_sequence_to_ask(self) -> int | None:
        """What a new session's login asks the account events after: the last sequence seen.

        With none seen yet there is nothing to ask from (a login_response does
        not tell the account's sequence): what became of orders of unknown fate
        meanwhile will not be told, and the operator should know why they stay unknown.
        """
        if self.account_sequence is None:
            unknown = sum(1 for order in self.orders.open() if order.state is OrderState.UNKNOWN)
            if unknown:
                self.log.warn("new session with no account event seen yet: the exchange cannot be asked what became"
                              " of {orders} of unknown fate so far (events from now on will come)",
                              orders=counted(unknown, "order"))
        return self.account_sequence

    def logged_in(self, protocol: SmarketsClientProtocol) -> None:
        if self.intent is Intent.ENDED:
            # The session was given up (`stop`) while this connection logged in.
            self.log.warn("a login answered after the session ended: closing that connection")
            self.state.reset()
            assert protocol.transport is not None
            protocol.transport.loseConnection()
            return
        self.current = protocol
        if not protocol.resuming:
            # Until its first account event, which a resume of it may bring as well.
            self._new_session = True
            self._renew_subscriptions()
        # Send nothing until this login's limits are known: the exchange starts
        # a full bucket at each login, less what we resend to it meanwhile.
        self._spent_since_login = 0
        self._limits_wait = self.clock.callLater(LIMITS_WAIT, self._limits_known)
        self.handlers.notify("logged_in", protocol.resuming)
        waiters, self._login_waiters = self._login_waiters, []
        for waiter in waiters:
            waiter.callback(protocol)
        self._pump()

    def logged_out(self, protocol: SmarketsClientProtocol, error: Exception) -> None:
        reason = getattr(error, "reason", None)
        if self.intent is Intent.ENDED:
            return  # a connection left open after the end: nothing more to end
        if self.intent is Intent.LOGGING_OUT or reason == eto_pb2.LOGOUT_CONFIRMATION:
            self._end_for_good(errors.SessionLost("logged out"), logged_out=True)
        elif reason == eto_pb2.LOGOUT_UNKNOWN_SESSION:
            # The exchange cannot resume (or carry on) the session: what was in
            # flight has an unknown fate; the next login starts a new session and
            # asks for the account events since the last account sequence seen.
            self._end_session(errors.SessionLost(f"the exchange dropped the session: {error}"))
        elif isinstance(error, errors.LoginError):
            if reason in _FINAL_LOGIN_REFUSALS:
                self._end_for_good(error)
            elif self.state.session_id is None:
                self._end_session(errors.SessionLost(f"no session could be started: {error}"))

    def sends_lost(self, seqs: list[range]) -> None:
        """The exchange asked again for payloads gone from our sent log: they never reach it."""
        for lost in seqs:
            self.log.error("payloads {first} to {last} left the sent log before the exchange had them",
                           first=lost.start, last=lost.stop - 1)
            self.requests.fail(errors.SessionLost("never reached the exchange: gone from the sent log", sent=False),
                               lost)

    def incoming_gap(self, was_open: bool, is_open: bool, gapfilled: int) -> None:
        """What one payload did to a gap in the exchange's seqs, told to the listeners (a gap is rare)."""
        if gapfilled:
            self.handlers.notify("gapfilled")
        if is_open != was_open:
            self.handlers.notify("gap_opened" if is_open else "gap_closed")

    def protocol_lost(self, protocol: SmarketsClientProtocol, error: Exception) -> None:
        if protocol is self.current:
            self.current = None
        if protocol is self._connection:
            self._connection = None
        for timer in (self._pump_call, self._limits_wait):
            if timer is not None and timer.active():
                timer.cancel()
        self._pump_call = self._limits_wait = None
        self._spent_since_login = None
        if self.intent is Intent.LOGGING_OUT:
            # The logout was not confirmed, or the login it followed never
            # answered: the session ends here all the same.
            self._end_for_good(errors.SessionLost("logged out"), logged_out=True)
        elif isinstance(error, errors.BadLoginResponse) and self.state.session_id is not None:
            # Resuming it would meet the same answer: the next login starts a new
            # session, which asks for the account events since the last one seen.
            self._end_session(errors.SessionLost(f"session abandoned: {error}"))
        elif self.state.session_id is None:
            # No session to resume: nothing queued can be sent on it.
            self.requests.fail(errors.SessionLost(f"no session: {error}"))
            self.pings.fail(errors.SessionLost(f"no session: {error}"))
        else:
            self.log.info("connection lost; the session will resume on the next connection ({pending} pending)",
                          pending=len(self.requests))
        self.handlers.notify("connection_lost", error)

    def _end_session(self, error: Exception) -> None:
        self.state.reset()
        self.current = None
        self.bucket = TokenBucket()
        self.requests.fail(error)
        self.pings.fail(error)
        self.handlers.notify("session_ended", error)

    def _end_for_good(self, error: errors.SmarketsError, logged_out: bool = False) -> None:
        """End the session, once: no new one is wanted until the application connects again.

        Nobody waits for a login any more.  A logout ends the application's
        intent too: the next session starts with no subscriptions or settings.
        """
        if self.intent is Intent.ENDED:
            return
        self.intent = Intent.ENDED
        self.ended = error
        self._end_session(error)
        if logged_out:
            self.subscriptions.clear()
            self._cancel_all_on_failure = None
        if self.on_ended is not None:
            self.on_ended(error)
        waiters, self._login_waiters = self._login_waiters, []
        for waiter in waiters:
            waiter.errback(error)

    def stop(self) -> None:
        """Give up the session without logging out: every pending request and waiter fails."""
        self._end_for_good(errors.SessionLost("the client was stopped"))

    # Incoming

    def payload_received(self, protocol: SmarketsClientProtocol, payload: Payload) -> None:
        kind = payload.type
        route = _ROUTES.get(kind)
        if route is None:
            # A session payload: named by its eto type; it reports no account
            # sequence and answers no request.
            name, message = name_and_body(payload)
            self.handlers.dispatch(name, payload, message)
            return
        name, field, account_sequenced, answers = route
        message = getattr(payload, field)
        if account_sequenced:
            sequence = message.account_sequence_64
            if sequence and self._new_session:
                self._new_session = False
                if self.account_sequence is not None and sequence <= self.account_sequence:
                    self._renumbered(sequence)
            if sequence and (self.account_sequence is None or sequence > self.account_sequence):
                self.account_sequence = sequence
        elif kind == seto_pb2.PAYLOAD_THROTTLE_LIMITS_CHANGED:
            now = self.clock.seconds()
            self.bucket.set_limits(message.average_rate_ps, message.burst_size, message.tick_ms, now,
                                   THROTTLE_HEADROOM)
            # The exchange's bucket started full at the login: what went out since counts.
            self.bucket.spend(self._spent_since_login or 0, now)
            self._spent_since_login = None
            self._limits_known()
        self.handlers.dispatch(name, payload, message)
        if answers:
            self.requests.answer(name, message)

    def _renumbered(self, sequence: int) -> None:
        """A new session's first account event at or below the last one seen: it was asked for later ones
        only, so the exchange numbers them afresh (it was restarted): count from this one, skip none."""
        self.log.warn("the exchange numbers account events afresh (from {sequence}; this client had seen {last}):"
                      " it was restarted", sequence=sequence, last=self.account_sequence)
        self.account_sequence = self.orders.account_sequence = sequence - 1

    def data_processed(self) -> None:
        """Every payload of a chunk of data received was handled: report the last account sequence, if it moved."""
        sequence = self.account_sequence
        if sequence != self._reported_account_sequence:
            self._reported_account_sequence = sequence
            if self.on_account_event is not None and sequence is not None:
                self.on_account_event(sequence)

    def _limits_known(self) -> None:
        if self._limits_wait is not None and self._limits_wait.active():
            self._limits_wait.cancel()
        self._limits_wait = None
        self._pump()

    def spend(self, count: int) -> None:
        """The session sent ``count`` payloads (requests, its own, resent ones): the exchange's throttle counts each."""
        self.bucket.spend(count, self.clock.seconds())
        if self._spent_since_login is not None:
            self._spent_since_login += count

    # Requests

    @property
    def queued(self) -> int:
        """Requests waiting to be sent (for login, or for throttle tokens)."""
        return len(self.requests.unsent)

    @_invalid_fails
    def order(
        self,
        market_id: int,
        contract_id: int,
        side: int,
        quantity: int,
        price: int,
        tif: int = seto_pb2.GOOD_TIL_CANCELLED,
        reference: int | None = None,
        label: str | None = None,
        timeout: float | None = None,
        maq: int | None = None,
    ) -> Deferred[Any]:
        """Place a limit order: fires with OrderAccepted, or fails with OrderRejected / OrderInvalid.

        ``maq`` is the minimum acceptable quantity.  The order is tracked in
        ``self.orders`` under its client ``reference`` (one of the library's
        when none is given).  A value the order cannot carry fails it with
        InvalidRequest, naming the field.
        """
        if reference is None:
            reference = next(self._references)
        payload = application_message(
            "order_create",
            market_id=market_id,
            contract_id=contract_id,
            side=side,
            quantity=quantity,
            price=_wire_price(price),
            maq=maq,
            tif=tif,
            reference=reference,
            label=label,
        )
        tracked = self.session_available
        deferred = self._request(payload, lambda seq: ((reference, "order", seq), ("order", seq)), timeout)
        if tracked:
            self.orders.placed(Order(market_id, contract_id, side, price, quantity, reference, label, tif), deferred)
        return deferred

    @_invalid_fails
    def cancel(self, order_id: int, timeout: float | None = None, reference: int | None = None) -> Deferred[Any]:
        """Cancel an order: fires with OrderCancelled, or fails with CancelRejected."""
        return self._referenced("order_cancel", ("cancel", order_id), timeout, reference, order_id=order_id)

    @_invalid_fails
    def cancel_all(self, market_id: int | None = None, timeout: float | None = None) -> Deferred[Any]:
        """Cancel every order (in one market): fires with OrderCancelAllAccepted."""
        return self._referenced("order_cancel_all", ("cancel_all",), timeout, None, market_id=market_id)

    @_invalid_fails
    def reduce(
        self, order_id: int, new_quantity: int, timeout: float | None = None, reference: int | None = None
    ) -> Deferred[Any]:
        """Reduce an order's quantity: fires with OrderQuantityReduced, or fails with ReduceRejected."""
        return self._referenced("order_quantity_reduce", ("reduce", order_id), timeout, reference, order_id=order_id,
                                new_quantity=new_quantity)

    @_invalid_fails
    def replace(
        self,
        order_id: int,
        price: int,
        quantity: int,
        timeout: float | None = None,
        reference: int | None = None,
        label: str | None = None,
    ) -> Deferred[Any]:
        """Cancel-replace an order: fires with OrderCancelReplaceAccepted, or fails with ReplaceRejected."""
        return self._referenced("order_cancel_replace", ("replace", order_id), timeout, reference,
                                orig_order_id=order_id, price=_wire_price(price), quantity=quantity, label=label)

    @_invalid_fails
    def subscribe(self, market_id: int, timeout: float | None = None) -> Deferred[Any]:
        """Subscribe to a market's quotes: fires with the MarketQuotes snapshot."""
        payload = application_message("market_subscribe", market_id=market_id)
        deferred = self._request(payload, _fixed(("subscribe", market_id)), timeout)
        if self.session_available:
            self.subscriptions.add(market_id)
        return deferred

    @_invalid_fails
    def unsubscribe(self, market_id: int, timeout: float | None = None) -> Deferred[Any]:
        """Stop a market's quotes: fires with None once the request is sent (it has no answer)."""
        payload = application_message("market_unsubscribe", market_id=market_id)
        self.subscriptions.discard(market_id)
        self.books.forget(market_id)
        return self._request(payload, None, timeout)

    @_invalid_fails
    def settings(self, cancel_all_on_failure: bool, timeout: float | None = None) -> Deferred[Any]:
        """Ask the exchange to cancel every open order if the session fails: fires with SettingsAccepted."""
        payload = application_message("settings", cancel_all_on_failure=cancel_all_on_failure)
        deferred = self._request(payload, _fixed(("settings",)), timeout)
        if self.session_available:
            self._cancel_all_on_failure = cancel_all_on_failure
        return deferred

    @property
    def session_available(self) -> bool:
        """Whether a request made now can be sent: a session is held or being logged in."""
        return self.state.session_id is not None or self._connection is not None

    def _referenced(
        self, field: str, fallback: tuple[Any, ...], timeout: float | None, reference: int | None, **fields: Any
    ) -> Deferred[Any]:
        """A request tagged with a client reference (the caller's, or a fresh one), which its answer echoes."""
        if reference is None:
            reference = next(self._references)
        payload = application_message(field, reference=reference, **fields)
        keys = ((reference, *fallback), fallback)  # as `requests._by_reference` makes them of the answer
        return self._request(payload, lambda seq: keys, timeout)

    def _request(
        self, payload: Payload, keys: Callable[[int], tuple[Key, ...]] | None, timeout: float | None
    ) -> Deferred[Any]:
        if not self.session_available:
            return fail(errors.NotLoggedIn("no session: connect and log in first"))
        if timeout is None:
            timeout = self.config.request_timeout
        request = self.requests.add(payload, keys, timeout)
        self._pump()
        return request.deferred

    def _renew_subscriptions(self) -> None:
        """A new session starts with no subscriptions or settings: ask again, quietly.

        Runs before anything queued is sent; a subscription already queued is not asked twice.
        """
        self._resubscribe(self.subscriptions)
        if self._cancel_all_on_failure is not None and not any(r.payload.HasField("settings")
                                                               for r in self.requests.unsent):
            settings = application_message("settings", cancel_all_on_failure=self._cancel_all_on_failure)
            self._ask_quietly(settings, "the cancel_all_on_failure setting")

    def _resubscribe(self, market_ids: Iterable[int]) -> None:
        """Ask quietly for these markets' snapshots again; a subscription already queued is not asked twice."""
        queued = {r.payload.market_subscribe.market_id for r in self.requests.unsent
                  if r.payload.HasField("market_subscribe")}
        for market_id in sorted(set(market_ids) - queued):
            self._ask_quietly(application_message("market_subscribe", market_id=market_id), f"market {market_id}")

    def _ask_quietly(self, payload: Payload, what: str) -> None:
        """Queue a request the library makes for itself: no caller awaits it, so a failure is only logged."""
        self.requests.add(payload, None, None).deferred.addErrback(
            lambda failure: self.log.info("{what} was not asked for again: {why}", what=what,
                                          why=failure.getErrorMessage()))

    def _refresh_books(self, market_ids: Iterable[int]) -> None:
        """Books a replay could not restore: the exchange answers every subscribe with a snapshot."""
        self._resubscribe(market_ids)
        self._pump()

    def _pump(self) -> None:
        """Send the pings asked for, then queued requests in order, as far as the throttle allows.

        Each payload sent spends its token through `spend`, with whatever
        else the session sent.  Nothing goes out once a logout is asked for:
        the exchange acts on nothing behind it, and what stays queued fails
        with SessionLost(sent=False), known never to have been acted on.
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            while self.pings.to_send() or self.requests.unsent:
                protocol = self.current
                if (protocol is None or not protocol.is_connected or self._limits_wait is not None
                        or self.intent is not Intent.WANTED):
                    return
                # What the session sent meanwhile (a resume's resends, a pong) is
                # counted at the next flush: count it now, before asking for a token.
                protocol.count_sent()
                now = self.clock.seconds()
                delay = self.bucket.delay(now)
                if delay:
                    if self._pump_call is None or not self._pump_call.active():
                        self._pump_call = self.clock.callLater(delay, self._pump_later)
                    return
                if self.pings.to_send():
                    self.pings.went_out()
                    protocol.send_ping()
                    continue
                request = self.requests.next_unsent()
                try:
                    seq = protocol.send_payload(request.payload)
                except errors.SmarketsError as e:
                    self.log.error("could not send a request: {error}", error=e)
                    self.requests.not_sent(request, e)
                    continue
                self.requests.sent(request, seq)
        finally:
            self._pumping = False

    def _pump_later(self) -> None:
        self._pump_call = None
        self._pump()


def _fixed(key: Key) -> Callable[[int], tuple[Key, ...]]:
    return lambda seq: (key,)
