"""SmarketsClientFactory: the client's session across connections.

It holds what one connection must not lose: the credentials, the Session
state (session id, seqs, the log of what was sent), requests awaiting
answers, the throttle queue, handlers, subscriptions and the account
sequence.  Each protocol it builds logs in at once, resuming the session
when there is one; reconnecting is the job of a ClientService around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import ClientFactory
from twisted.logger import Logger

from smarkets_twisted import errors
from smarkets_twisted.handlers import GlobalHandler, Handler, HandlerRegistry
from smarkets_twisted.payloads import SETO_FIELDS, Payload, application_message, name_and_body
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.protocol import SmarketsClientProtocol
from smarkets_twisted.requests import Key, PendingRequests
from smarkets_twisted.session import SessionState
from smarkets_twisted.settings import ClientSettings
from smarkets_twisted.throttle import TokenBucket

#: Login refusals after which trying again cannot help.
_FINAL_LOGIN_REFUSALS = frozenset({eto_pb2.LOGOUT_UNAUTHORISED, eto_pb2.LOGOUT_UNVERIFIED})

#: seto payload types whose body reports the account sequence.
_ACCOUNT_SEQUENCED_TYPES = frozenset(
    number
    for number, field in SETO_FIELDS.items()
    if "account_sequence_64" in getattr(seto_pb2.Payload.DESCRIPTOR.fields_by_name[field].message_type,
                                        "fields_by_name", ())
)


class SmarketsClientFactory(ClientFactory):
    """Builds SmarketsClientProtocols and offers the Deferred API."""

    log = Logger()
    protocol = SmarketsClientProtocol  # type: ignore[assignment]

    def __init__(self, config: ClientSettings, clock: IReactorTime | None = None) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.config = config
        self.clock = clock
        self.state = SessionState(config.sent_log_size)
        self.requests = PendingRequests(clock)
        self.handlers = HandlerRegistry()
        self.bucket = TokenBucket()
        #: The highest account sequence seen, sent at a new session's login.
        self.account_sequence: int | None = None
        #: Markets subscribed to, renewed when a new session has to be started.
        self.subscriptions: set[int] = set()
        #: The logged-in protocol, if any.
        self.current: SmarketsClientProtocol | None = None
        self._connection: SmarketsClientProtocol | None = None
        self._login_waiters: list[Deferred[SmarketsClientProtocol]] = []
        self._cancel_all_on_failure: bool | None = None
        self._pump_call: IDelayedCall | None = None
        self._pumping = False
        self._ending = False
        #: Called with the error when a login is refused for good (bad credentials).
        self.on_final_refusal: Callable[[errors.SmarketsError], object] | None = None

    def __repr__(self) -> str:
        return f"<SmarketsClientFactory user={self.config.username!r} {self.state!r}>"

    # Handlers (the reference client's API)

    def add_handler(self, name: str, handler: Handler) -> None:
        self.handlers.add_handler(name, handler)

    def del_handler(self, name: str, handler: Handler) -> None:
        self.handlers.del_handler(name, handler)

    def add_global_handler(self, handler: GlobalHandler) -> None:
        self.handlers.add_global_handler(handler)

    def del_global_handler(self, handler: GlobalHandler) -> None:
        self.handlers.del_global_handler(handler)

    # Session lifecycle

    def buildProtocol(self, addr: IAddress | None) -> SmarketsClientProtocol:  # type: ignore[override]
        protocol = self.protocol()
        protocol.factory = self
        self._connection = protocol
        self._ending = False
        return protocol

    def whenLoggedIn(self) -> Deferred[SmarketsClientProtocol]:
        """A new Deferred for the current, or next, logged-in protocol."""
        if self.current is not None:
            return succeed(self.current)
        deferred: Deferred[SmarketsClientProtocol] = Deferred(lambda d: self._login_waiters.remove(d))
        self._login_waiters.append(deferred)
        return deferred

    def login(self) -> Deferred[Any]:
        """The LoginResponse of the connection logging in now (or LoginError)."""
        if self._connection is None:
            return fail(errors.NotLoggedIn("not connected"))
        return self._connection.login()

    def logout(self) -> Deferred[None]:
        """Log out cleanly and end the session; pending requests fail with SessionLost."""
        self._ending = True
        if self._connection is not None and self._connection.is_connected:
            return self._connection.logout()
        self._end_session(errors.SessionLost("logged out"))
        return succeed(None)

    def ping(self) -> Deferred[float]:
        """Round-trip time to the exchange on the current connection, in seconds."""
        if self.current is None:
            return fail(errors.NotLoggedIn("ping needs a logged-in connection"))
        return self.current.ping()

    def logged_in(self, protocol: SmarketsClientProtocol) -> None:
        self.current = protocol
        if not protocol.resuming:
            self._renew_subscriptions()
        waiters, self._login_waiters = self._login_waiters, []
        for waiter in waiters:
            waiter.callback(protocol)
        self._pump()

    def logging_out(self) -> None:
        self._ending = True

    def logged_out(self, protocol: SmarketsClientProtocol, error: Exception) -> None:
        reason = getattr(error, "reason", None)
        if self._ending or reason == eto_pb2.LOGOUT_CONFIRMATION:
            self._end_session(errors.SessionLost("logged out"))
            # A logout ends the intent too: the next session starts bare.
            self.subscriptions.clear()
            self._cancel_all_on_failure = None
        elif isinstance(error, errors.LoginError):
            if reason in _FINAL_LOGIN_REFUSALS:
                if self.on_final_refusal is not None:
                    self.on_final_refusal(error)
                self._end_session(error, final=True)
            elif reason == eto_pb2.LOGOUT_UNKNOWN_SESSION or self.state.session_id is None:
                # The session cannot be resumed: what was in flight has an unknown fate.
                self._end_session(errors.SessionLost(f"the session could not be resumed: {error}"))

    def protocol_lost(self, protocol: SmarketsClientProtocol, error: Exception) -> None:
        if protocol is self.current:
            self.current = None
        if protocol is self._connection:
            self._connection = None
        if self._pump_call is not None and self._pump_call.active():
            self._pump_call.cancel()
        self._pump_call = None
        if self.state.session_id is None:
            # No session to resume: nothing queued can be sent on it.
            self.requests.fail_all(errors.SessionLost(f"no session: {error}"))
        elif not self._ending:
            self.log.info("connection lost; the session will resume on the next connection ({pending} pending)",
                          pending=len(self.requests))

    def _end_session(self, error: Exception, final: bool = False) -> None:
        self.state.reset()
        self.current = None
        self.bucket = TokenBucket()
        self.requests.fail_all(error if isinstance(error, errors.SmarketsError) else errors.SessionLost(str(error)))
        if final:
            waiters, self._login_waiters = self._login_waiters, []
            for waiter in waiters:
                waiter.errback(error)

    def stop(self) -> None:
        """Give up the session without logging out: every pending request fails."""
        self._ending = True
        self._end_session(errors.SessionLost("the client was stopped"))

    # Incoming

    def payload_received(self, protocol: SmarketsClientProtocol, payload: Payload) -> None:
        name, message = name_and_body(payload)
        if payload.type in _ACCOUNT_SEQUENCED_TYPES:
            sequence = message.account_sequence_64
            if sequence and (self.account_sequence is None or sequence > self.account_sequence):
                self.account_sequence = sequence
        elif payload.type == seto_pb2.PAYLOAD_THROTTLE_LIMITS_CHANGED:
            limits = payload.throttle_limits_changed
            self.bucket.set_limits(limits.average_rate_ps, limits.burst_size, limits.tick_ms, self.clock.seconds())
        self.handlers.dispatch(name, message)
        self.requests.answer(name, message)

    # Requests

    @property
    def queued(self) -> int:
        """Requests waiting to be sent (for login, or for throttle tokens)."""
        return len(self.requests.unsent)

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
    ) -> Deferred[Any]:
        """Place a limit order: fires with OrderAccepted, or fails with OrderRejected / OrderInvalid."""
        payload = application_message(
            "order_create",
            market_id=market_id,
            contract_id=contract_id,
            side=side,
            quantity=quantity,
            price=price,
            tif=tif,
            reference=reference,
            label=label,
        )
        return self._request(payload, lambda seq: ("order", seq), timeout)

    def cancel(self, order_id: int, timeout: float | None = None) -> Deferred[Any]:
        """Cancel an order: fires with OrderCancelled, or fails with CancelRejected."""
        return self._request(application_message("order_cancel", order_id=order_id), _fixed(("cancel", order_id)),
                             timeout)

    def cancel_all(self, market_id: int | None = None, timeout: float | None = None) -> Deferred[Any]:
        """Cancel every order (in one market): fires with OrderCancelAllAccepted."""
        payload = application_message("order_cancel_all", market_id=market_id)
        return self._request(payload, _fixed(("cancel_all",)), timeout)

    def reduce(self, order_id: int, new_quantity: int, timeout: float | None = None) -> Deferred[Any]:
        """Reduce an order's quantity: fires with OrderQuantityReduced, or fails with ReduceRejected."""
        payload = application_message("order_quantity_reduce", order_id=order_id, new_quantity=new_quantity)
        return self._request(payload, _fixed(("reduce", order_id)), timeout)

    def replace(self, order_id: int, price: int, quantity: int, timeout: float | None = None) -> Deferred[Any]:
        """Cancel-replace an order: fires with OrderCancelReplaceAccepted, or fails with ReplaceRejected."""
        payload = application_message("order_cancel_replace", orig_order_id=order_id, price=price, quantity=quantity)
        return self._request(payload, _fixed(("replace", order_id)), timeout)

    def subscribe(self, market_id: int, timeout: float | None = None) -> Deferred[Any]:
        """Subscribe to a market's quotes: fires with the MarketQuotes snapshot."""
        self.subscriptions.add(market_id)
        payload = application_message("market_subscribe", market_id=market_id)
        return self._request(payload, _fixed(("subscribe", market_id)), timeout)

    def unsubscribe(self, market_id: int, timeout: float | None = None) -> Deferred[Any]:
        """Stop a market's quotes: fires with None once the request is sent (it has no answer)."""
        self.subscriptions.discard(market_id)
        return self._request(application_message("market_unsubscribe", market_id=market_id), None, timeout)

    def settings(self, cancel_all_on_failure: bool, timeout: float | None = None) -> Deferred[Any]:
        """Ask the exchange to cancel every open order if the session fails: fires with SettingsAccepted."""
        self._cancel_all_on_failure = cancel_all_on_failure
        payload = application_message("settings", cancel_all_on_failure=cancel_all_on_failure)
        return self._request(payload, _fixed(("settings",)), timeout)

    def _request(self, payload: Payload, key: Callable[[int], Key] | None, timeout: float | None) -> Deferred[Any]:
        if self.state.session_id is None and self._connection is None:
            return fail(errors.NotLoggedIn("no session: connect and log in first"))
        if timeout is None:
            timeout = self.config.request_timeout
        request = self.requests.add(payload, key, timeout)
        self._pump()
        return request.deferred

    def _renew_subscriptions(self) -> None:
        """A new session starts with no subscriptions or settings: ask again, quietly.

        Runs before anything queued is sent; a subscription already queued is not asked twice.
        """
        queued = {r.payload.market_subscribe.market_id for r in self.requests.unsent
                  if r.payload.HasField("market_subscribe")}
        for market_id in sorted(self.subscriptions - queued):
            self.requests.add(application_message("market_subscribe", market_id=market_id), None, None)
        if self._cancel_all_on_failure is not None and not any(r.payload.HasField("settings")
                                                               for r in self.requests.unsent):
            settings = application_message("settings", cancel_all_on_failure=self._cancel_all_on_failure)
            self.requests.add(settings, None, None)

    def _pump(self) -> None:
        """Send queued requests, in order, as far as the throttle allows."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self.requests.unsent:
                protocol = self.current
                if protocol is None or not protocol.is_connected:
                    return
                now = self.clock.seconds()
                if not self.bucket.take(now):
                    if self._pump_call is None or not self._pump_call.active():
                        self._pump_call = self.clock.callLater(self.bucket.delay(now), self._pump_later)
                    return
                request = self.requests.unsent.popleft()
                seq = protocol.send_payload(request.payload)
                self.requests.sent(request, seq)
        finally:
            self._pumping = False

    def _pump_later(self) -> None:
        self._pump_call = None
        self._pump()


def _fixed(key: Key) -> Callable[[int], Key]:
    return lambda seq: key
