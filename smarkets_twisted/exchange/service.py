"""The simulated exchange: accounts, catalogue, engine and sessions, tied together.

`Exchange` takes the application payloads that connections deliver, asks the
matching engine, and sends what the engine reports to the sessions that must
hear it:

- the answer to a request that only its sender can correlate (order
  accepted, rejected, invalid; cancel, reduce and replace rejected; cancel-all
  accepted or rejected) to the session that sent it, echoing the request's
  ``reference`` (and for an order, its ``seq``);
- every other account event (fills, cancels, reductions, replaces, balance
  changes) to every connected session of the account; a session waiting for
  a resume is sent, when it resumes, what it missed from the account's
  history (one log per account, not a copy per session);
- market states to the market's subscribers, and book deltas to those of
  them that are connected: a resumed session gets a fresh snapshot instead.

It also has a plain Python API (`place_order`, `halt`, `settle`...) so that
tests, demos and the liquidity simulator can drive the market directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from smarkets_twisted.exchange import engine, messages
from smarkets_twisted.exchange.accounts import Account, Accounts, default_accounts
from smarkets_twisted.exchange.catalogue import Catalogue, demo_catalogue
from smarkets_twisted.exchange.engine import MatchingEngine
from smarkets_twisted.exchange.events import (
    AccountEvent,
    BalanceChanged,
    BookChanged,
    CancelAllAccepted,
    CancelAllRejected,
    CancelRejected,
    EngineEvent,
    MarketBook,
    MarketEvent,
    OpenOrder,
    OrderAccepted,
    OrderCancelled,
    OrderExecuted,
    OrderInvalid,
    OrderRejected,
    ReduceRejected,
    ReplaceAccepted,
    ReplaceRejected,
    account_event,
)
from smarkets_twisted.exchange.sessions import (
    DEFAULT_DETACHED_BUDGET,
    DEFAULT_RETENTION,
    DEFAULT_SENT_LOG_SIZE,
    DEFAULT_SESSIONS_PER_ACCOUNT,
    ExchangeSession,
    SessionRegistry,
)
from smarkets_twisted.payloads import SETO_FIELDS, Payload, application_message, session_message
from smarkets_twisted.proto import eto_pb2, seto_pb2
from smarkets_twisted.wording import counted


@dataclass(frozen=True)
class ExchangeSettings:
    """Exchange-wide limits.

    :ivar average_rate_ps: throttle tokens per second per session.
    :ivar burst_size: most throttle tokens a session can hold.
    :ivar tick_ms: how often tokens are added (milliseconds).
    :ivar depth: price levels per side in market data (None: every level).
    :ivar retention: seconds a disconnected session can still be resumed.
    :ivar sent_log_size: payloads kept per session to answer replay requests.
    :ivar sessions_per_account: sessions one account may hold; a new one ends
        the account's longest detached session, and is refused when all are
        connected.
    :ivar detached_budget: bytes the sent logs of all detached sessions may
        hold; beyond it, the longest detached sessions end early.
    :ivar events_per_turn: account events sent to one session per reactor
        turn when it asked for many (a replay by account sequence).
    :ivar any_price: accept any price from 1 to 9999; by default only the
        ticks of production's odds ladder (`smarkets_twisted.trading.prices`)
        are, others are ORDER_INVALID_INVALID_PRICE.
    :ivar id_base: order ids and account sequences of this run start above it;
        None takes `id_base_at` the exchange clock's time at its start, so a
        restarted exchange never hands out an id or sequence an earlier run did.
    """

    average_rate_ps: int = 500
    burst_size: int = 1000
    tick_ms: int = 200
    depth: int | None = engine.DEFAULT_DEPTH
    retention: float = DEFAULT_RETENTION
    sent_log_size: int = DEFAULT_SENT_LOG_SIZE
    sessions_per_account: int = DEFAULT_SESSIONS_PER_ACCOUNT
    detached_budget: int = DEFAULT_DETACHED_BUDGET
    events_per_turn: int = 100
    any_price: bool = False
    id_base: int | None = None


#: Ids a run may hand out per second of the clock before it reaches the next run's base.
IDS_PER_SECOND = 1_000_000


def id_base_at(seconds: float) -> int:
    """The base of the ids of a run started at ``seconds`` since the epoch: microseconds.

    A later run starts above every id of an earlier one unless that one handed
    out more than one id a microsecond on average.  Now (1.8e15) and for two
    centuries it stays below 2**53, so ids fit the schema's uint64 and even a
    double, and account sequences the uint64 ``account_sequence_64`` (the
    uint32 ``account_sequence`` is then left out, see `messages`).
    """
    return int(seconds * IDS_PER_SECOND)


#: Events that answer one order_create: only the session that sent it can correlate them.
_ORDER_ANSWERS = (OrderInvalid, OrderAccepted, OrderRejected)

#: Answers to one request, sent to the session that made it (when there is one).
_REQUEST_ANSWERS = (
    *_ORDER_ANSWERS,
    CancelRejected,
    CancelAllAccepted,
    CancelAllRejected,
    ReduceRejected,
    ReplaceRejected,
)


class Exchange:
    """The whole simulated exchange, sans sockets.

    :param clock: time for throttles, session expiry and execution stamps.
    :param accounts: who can log in; the built-in ``demo`` account if None.
    :param catalogue: what can be traded; the built-in demo markets if None.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        accounts: Accounts | None = None,
        catalogue: Catalogue | None = None,
        settings: ExchangeSettings | None = None,
    ) -> None:
        self.clock = clock
        self.settings = settings if settings is not None else ExchangeSettings()
        self.accounts = accounts if accounts is not None else default_accounts()
        self.catalogue = catalogue if catalogue is not None else demo_catalogue()
        base = self.settings.id_base if self.settings.id_base is not None else id_base_at(clock.seconds())
        for account in self.accounts:
            account.number_from(base)
        self.engine = MatchingEngine(
            self.accounts,
            self.catalogue,
            depth=self.settings.depth,
            first_order_id=base + 1,
            any_price=self.settings.any_price,
        )
        self.registry = SessionRegistry(
            clock,
            retention=self.settings.retention,
            sent_log_size=self.settings.sent_log_size,
            sessions_per_account=self.settings.sessions_per_account,
            detached_budget=self.settings.detached_budget,
        )
        #: Open order id → the session that placed it (for cancel_all_on_failure).
        self._placed_by: dict[int, ExchangeSession] = {}
        self._handlers: dict[str, Callable[[ExchangeSession, Payload], None]] = {
            "order_create": self._order_create,
            "order_cancel": self._order_cancel,
            "order_cancel_all": self._order_cancel_all,
            "order_quantity_reduce": self._order_quantity_reduce,
            "order_cancel_replace": self._order_cancel_replace,
            "settings": self._settings,
            "market_subscribe": self._market_subscribe,
            "market_unsubscribe": self._market_unsubscribe,
        }

    # Sessions: called by the connections

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the credentials are right, else None."""
        return self.accounts.authenticate(username, password)

    def session_started(self, session: ExchangeSession, login: seto_pb2.Login) -> None:
        """A login was accepted: announce the throttle, snapshot the markets
        subscribed to (a resumed session missed their deltas), send the
        account events asked for, or that a resumed session missed."""
        settings = self.settings
        now = self.clock.seconds()
        session.throttle.set_limits(settings.average_rate_ps, settings.burst_size, settings.tick_ms, now)
        limits = application_message(
            "throttle_limits_changed",
            average_rate_ps=settings.average_rate_ps,
            burst_size=settings.burst_size,
            tick_ms=settings.tick_ms,
        )
        session.send(limits, now)
        for market_id in sorted(session.subscriptions):
            book = self.engine.book(market_id)
            if book is not None:
                session.send(messages.market_quotes(book), now)
        missed_after = session.detached_at_account_sequence
        session.detached_at_account_sequence = None
        if login.HasField("account_sequence_64"):
            self._replay_account(session, login.account_sequence_64)
        elif login.HasField("account_sequence"):
            self._replay_account(session, login.account_sequence)
        elif missed_after is not None:
            self._catch_up(session, missed_after)

    def can_resume(self, session: ExchangeSession) -> bool:
        """False when the sent log cannot hold all that was sent since the
        connection went away, with what a resume sends (login_response,
        throttle_limits_changed, a snapshot per subscription)."""
        return not session.lost_while_detached(2 + len(session.subscriptions))

    def _replay_account(self, session: ExchangeSession, after: int) -> None:
        account = session.account
        replay = account.events_after(after)
        if replay.truncated:
            self.log.warn(
                "{username} asked for account events after {after}; the oldest still held is later",
                username=account.username,
                after=after,
            )
        queued: list[AccountEvent] = []
        # balance_changed has an account sequence but no field to report it in,
        # so the client reports the sequence of the event before it: the
        # balance_changed right after that sequence came in the same batch, and
        # the client had it already.
        same_batch = bool(replay.events) and replay.events[0].account_sequence == after + 1
        for event in replay.events:
            assert isinstance(event, AccountEvent)
            if isinstance(event, BalanceChanged) and same_batch:
                continue
            same_batch = False
            if isinstance(event, _ORDER_ANSWERS):
                # Its seq belonged to an earlier session: 0 matches no request of this one.
                event = dataclasses.replace(event, request_seq=None)
            queued.append(event)
        self._queue(session, queued)

    def _catch_up(self, session: ExchangeSession, after: int) -> None:
        """Send a resumed session the account events it missed while detached.

        As if it had been connected: answers to other sessions' requests went
        only to them (`can_resume` made sure the history still holds the rest).
        """
        queued: list[AccountEvent] = []
        for event in session.account.events_after(after).events:
            assert isinstance(event, AccountEvent)
            if isinstance(event, _REQUEST_ANSWERS) and getattr(event, "request_seq", 0) is not None:
                continue
            queued.append(event)
        self._queue(session, queued)

    def _queue(self, session: ExchangeSession, events: list[AccountEvent]) -> None:
        """Send account events to a session, ``events_per_turn`` at a time.

        A replay of the account's whole history is thousands of payloads: sent
        at once, it would hold every other session up.  The rest waits in the
        session's backlog for the next reactor turn, and account events that
        happen meanwhile join the backlog, so that they arrive in order.  A
        connection that goes away leaves the backlog behind (the session
        catches up from the account's history if it resumes).
        """
        session.backlog.extend(events)
        if session.draining is None and not session.sending:
            self._drain(session)

    def _drain(self, session: ExchangeSession) -> None:
        """Send one turn's worth of the backlog; schedule the next turn for the rest.

        It runs in a reactor callback: an error is logged and closes the
        connection, never escapes.  An event leaves the backlog once sent, so
        the one that failed is among those the resume catches up from the
        account's history.  Events queued by a send (never, unless a
        connection writes synchronously) wait in the backlog for this loop.
        """
        session.draining = None
        backlog = session.backlog
        now = self.clock.seconds()
        session.sending = True
        try:
            for _ in range(self.settings.events_per_turn):
                if not backlog or session.connection is None:
                    break
                session.send(messages.event_payload(backlog[0]), now)
                backlog.popleft()
        except Exception:
            self.log.failure("cannot send {username} its account events: closing its connection",
                             username=session.account.username)
            if session.connection is not None:
                session.connection.close()
            return
        finally:
            session.sending = False
        if backlog and session.attached:
            session.draining = self.clock.callLater(0, self._drain, session)

    def session_failed(self, session: ExchangeSession) -> None:
        """The session's connection failed: cancel its orders if it asked for that."""
        if not session.cancel_all_on_failure:
            return
        order_ids = [order_id for order_id, placer in self._placed_by.items() if placer is session]
        self.log.info(
            "connection of {username} failed: cancelling its {orders}",
            username=session.account.username,
            orders=counted(len(order_ids), "open order"),
        )
        for order_id in order_ids:
            self._publish(self.engine.cancel(session.account, order_id))

    def handle(self, session: ExchangeSession, payload: Payload) -> None:
        """Act on one application payload from a logged-in session."""
        field = SETO_FIELDS[payload.type]
        if not self.admit(session, field):
            self._throttled(session, payload, field)
            return
        handler = self._handlers.get(field)
        if handler is None:
            self.log.info(
                "{username} sent {field}, which the simulated exchange does not serve: ignored",
                username=session.account.username,
                field=field,
            )
            return
        handler(session, payload)

    def admit(self, session: ExchangeSession, what: str) -> bool:
        """Whether the session's throttle has a token for ``what`` (a payload's name).

        A run of refusals is logged when it starts and when it ends, with its
        count: a flood is two lines, not one a payload.
        """
        username = session.account.username
        if session.throttle.take(self.clock.seconds()):
            if session.refused:
                self.log.info("{username} is within the throttle again after {refused} refused",
                              username=username, refused=counted(session.refused, "payload"))
                session.refused = 0
            return True
        if not session.refused:
            self.log.info(
                "{username} exceeded the throttle ({rate} a second, burst {burst}): {what} refused, "
                "and every payload until tokens refill",
                username=username, rate=self.settings.average_rate_ps, burst=self.settings.burst_size, what=what,
            )
        session.refused += 1
        return False

    def _throttled(self, session: ExchangeSession, payload: Payload, field: str) -> None:
        account = session.account
        refusal = _THROTTLED.get(field)
        if refusal is None:
            session.send(session_message(eto_pb2.PAYLOAD_THROTTLE_EXCEEDED), self.clock.seconds())
            return
        event_type, values = refusal
        request = getattr(payload, field)
        fields = values(request, payload.eto_payload.seq)
        if event_type is ReplaceRejected:
            # The order's fields are filled in when it is open.
            order = self.engine.open_order(account, request.orig_order_id)
            fields.update(
                market_id=order.market_id if order is not None else None,
                contract_id=order.contract_id if order is not None else None,
                side=order.side if order is not None else None,
            )
        self._publish([account.record(account_event(event_type, account, **fields))], session)

    # Application payloads

    def _order_create(self, session: ExchangeSession, payload: Payload) -> None:
        order = payload.order_create
        events = self.engine.create_order(
            session.account,
            order.market_id,
            order.contract_id,
            order.side,
            order.quantity,
            order.price,
            tif=order.tif,
            reference=_number(order, "reference"),
            label=_text(order, "label"),
            request_seq=payload.eto_payload.seq,
        )
        self._publish(events, session)

    def _order_cancel(self, session: ExchangeSession, payload: Payload) -> None:
        cancel = payload.order_cancel
        self._publish(self.engine.cancel(session.account, cancel.order_id, _number(cancel, "reference")), session)

    def _order_cancel_all(self, session: ExchangeSession, payload: Payload) -> None:
        cancel_all = payload.order_cancel_all
        events = self.engine.cancel_all(
            session.account, _number(cancel_all, "market_id"), _number(cancel_all, "reference")
        )
        self._publish(events, session)

    def _order_quantity_reduce(self, session: ExchangeSession, payload: Payload) -> None:
        reduce = payload.order_quantity_reduce
        events = self.engine.reduce(session.account, reduce.order_id, reduce.new_quantity, _number(reduce, "reference"))
        self._publish(events, session)

    def _order_cancel_replace(self, session: ExchangeSession, payload: Payload) -> None:
        replace = payload.order_cancel_replace
        events = self.engine.replace(
            session.account,
            replace.orig_order_id,
            replace.price,
            replace.quantity,
            reference=_number(replace, "reference"),
            label=_text(replace, "label"),
        )
        for event in events:
            if isinstance(event, ReplaceRejected) and event.reason == _STAND_IN:
                # The reason sent stands in for several: only the log can say which.
                self.log.info(
                    "{username}'s replace of order {order_id} refused: {detail} (sent as {reason})",
                    username=session.account.username,
                    order_id=event.orig_order_id,
                    detail=event.detail,
                    reason=seto_pb2.OrderCancelReplaceRejectedReason.Name(_STAND_IN),
                )
        self._publish(events, session)

    def _settings(self, session: ExchangeSession, payload: Payload) -> None:
        session.cancel_all_on_failure = payload.settings.cancel_all_on_failure
        accepted = application_message("settings_accepted", cancel_all_on_failure=session.cancel_all_on_failure)
        session.send(accepted, self.clock.seconds())

    def _market_subscribe(self, session: ExchangeSession, payload: Payload) -> None:
        market_id = payload.market_subscribe.market_id
        book = self.engine.book(market_id)
        if book is None:
            # The schema has no subscribe rejection: an empty snapshot answers
            # the request (so the client's wait ends) and no deltas follow.
            self.log.info(
                "{username} subscribed to unknown market {market_id}: answered with an empty snapshot",
                username=session.account.username,
                market_id=market_id,
            )
            session.send(application_message("market_quotes", market_id=market_id), self.clock.seconds())
            return
        session.subscriptions.add(market_id)
        session.send(messages.market_quotes(book), self.clock.seconds())

    def _market_unsubscribe(self, session: ExchangeSession, payload: Payload) -> None:
        session.subscriptions.discard(payload.market_unsubscribe.market_id)

    # Routing engine events to sessions

    def _publish(self, events: Iterable[EngineEvent], requester: ExchangeSession | None = None) -> None:
        now = self.clock.seconds()
        microseconds = int(now * 1_000_000)
        for event in events:
            self._track(event, requester)
            audience = self._audience(event, requester)
            if not audience:
                continue
            if isinstance(event, BookChanged):
                payload = messages.contract_quotes(event, microseconds)
            else:
                payload = messages.event_payload(event)
            for target in audience:
                if target.backlog and isinstance(event, AccountEvent):
                    target.backlog.append(event)
                else:
                    target.send(payload, now)

    def _audience(self, event: EngineEvent, requester: ExchangeSession | None) -> list[ExchangeSession]:
        if isinstance(event, MarketEvent):
            # Deltas only to connected sessions: a detached one gets a snapshot on resume.
            live_only = isinstance(event, BookChanged)
            return [
                session
                for session in self.registry
                if event.market_id in session.subscriptions and (session.attached or not live_only)
            ]
        if isinstance(event, _REQUEST_ANSWERS) and requester is not None:
            return [requester]
        assert isinstance(event, (AccountEvent, OrderInvalid))
        account = self.accounts.get(event.username)
        if account is None:
            return []
        # A detached session catches up from the account's history when it resumes.
        return [session for session in self.registry.of_account(account) if session.attached]

    def _track(self, event: EngineEvent, requester: ExchangeSession | None) -> None:
        """Keep `_placed_by` to the open orders, for cancel_all_on_failure."""
        placed_by = self._placed_by
        if isinstance(event, OrderAccepted):
            if requester is not None:
                placed_by[event.order_id] = requester
        elif isinstance(event, ReplaceAccepted):
            placer = placed_by.pop(event.orig_order_id, requester)
            if placer is not None:
                placed_by[event.order_id] = placer
        elif isinstance(event, OrderCancelled) or (
            isinstance(event, OrderExecuted) and not event.available_quantity
        ):
            placed_by.pop(event.order_id, None)

    # Python API, for tests, demos and the liquidity simulator

    def account(self, username: str) -> Account:
        """The account named ``username``.

        :raises KeyError: when there is none.
        """
        account = self.accounts.get(username)
        if account is None:
            raise KeyError(username)
        return account

    def book(self, market_id: int, depth: int | None = None) -> MarketBook | None:
        """A snapshot of a market's visible book, as a subscriber would see it."""
        return self.engine.book(market_id, depth)

    def open_orders(self, username: str, market_id: int | None = None) -> list[OpenOrder]:
        """The account's open orders, oldest first."""
        return self.engine.open_orders(self.account(username), market_id)

    def place_order(
        self,
        username: str,
        market_id: int,
        contract_id: int,
        side: seto_pb2.Side,
        quantity: int,
        price: int,
        tif: seto_pb2.TimeInForceType = seto_pb2.GOOD_TIL_CANCELLED,
        reference: int | None = None,
        label: str | None = None,
    ) -> list[EngineEvent]:
        """Place an order for an account, as if from outside any session.

        The account's sessions are told of it like any other account event.
        """
        events = self.engine.create_order(
            self.account(username), market_id, contract_id, side, quantity, price, tif, reference, label
        )
        self._publish(events)
        return events

    def cancel_order(self, username: str, order_id: int) -> list[EngineEvent]:
        """Cancel one of an account's orders, as if from outside any session."""
        events = self.engine.cancel(self.account(username), order_id)
        self._publish(events)
        return events

    def set_market_state(
        self, market_id: int, state: seto_pb2.MarketStateType, winner: int | None = None
    ) -> list[EngineEvent]:
        """Move a market to a new state and tell everyone concerned.

        :raises engine.MarketStateError: for an unknown market or a move the
            market cannot make.
        """
        events = self.engine.set_market_state(market_id, state, winner)
        self.log.info("market {market_id} is now {state}", market_id=market_id,
                      state=seto_pb2.MarketStateType.Name(state))
        self._publish(events)
        return events

    def open(self, market_id: int) -> list[EngineEvent]:
        """Open a market for trading before play (or reopen a halted one)."""
        return self.set_market_state(market_id, seto_pb2.MARKET_STATE_OPEN)

    def go_live(self, market_id: int) -> list[EngineEvent]:
        """Take a market in play: orders other than KEEP_IN_PLAY are cancelled."""
        return self.set_market_state(market_id, seto_pb2.MARKET_STATE_LIVE)

    def halt(self, market_id: int) -> list[EngineEvent]:
        """Halt a market: GOOD_TILL_HALTED orders are cancelled, new orders refused."""
        return self.set_market_state(market_id, seto_pb2.MARKET_STATE_HALTED)

    def settle(self, market_id: int, winner: int) -> list[EngineEvent]:
        """Settle a market with ``winner`` the winning contract: accounts are paid."""
        return self.set_market_state(market_id, seto_pb2.MARKET_STATE_SETTLED, winner)

    def void(self, market_id: int) -> list[EngineEvent]:
        """Void a market: every trade in it is undone."""
        return self.set_market_state(market_id, seto_pb2.MARKET_STATE_VOIDED)


def _label(message: Message) -> str | None:
    """The request's label, if the exchange would echo it."""
    label = _text(message, "label")
    return label if label is not None and len(label) <= engine.MAX_LABEL_LENGTH else None


#: The replace rejection sent where the schema has no fitting reason (invalid price
#: or quantity, label too long, insufficient funds: `engine.MatchingEngine.replace`).
_STAND_IN = seto_pb2.ORDER_CANCEL_REPLACE_REJECTED_SERVICE_TEMPORARILY_UNAVAILABLE

#: Request field -> the refusal of a throttled request: its event type, and its
#: fields from the request and the request's seq.  The schema has no throttle
#: reason for cancel-all (UNKNOWN_ERROR) or replace (SERVICE_TEMPORARILY_UNAVAILABLE).
_THROTTLED: dict[str, tuple[type[AccountEvent], Callable[[Any, int], dict[str, object]]]] = {
    "order_create": (
        OrderRejected,
        lambda request, seq: {
            "reason": seto_pb2.ORDER_REJECTED_THROTTLE_EXCEEDED,
            "request_seq": seq,
            "reference": _number(request, "reference"),
            "label": _label(request),
        },
    ),
    "order_cancel": (
        CancelRejected,
        lambda request, seq: {
            "order_id": request.order_id,
            "reason": seto_pb2.ORDER_CANCEL_REJECTED_THROTTLE_EXCEEDED,
            "reference": _number(request, "reference"),
        },
    ),
    "order_quantity_reduce": (
        ReduceRejected,
        lambda request, seq: {
            "order_id": request.order_id,
            "new_quantity": request.new_quantity,
            "reason": seto_pb2.ORDER_QUANTITY_REDUCE_REJECTED_THROTTLE_EXCEEDED,
            "reference": _number(request, "reference"),
        },
    ),
    "order_cancel_all": (
        CancelAllRejected,
        lambda request, seq: {
            "market_id": _number(request, "market_id"),
            "reason": seto_pb2.ORDER_CANCEL_ALL_REJECTED_UNKNOWN_ERROR,
            "reference": _number(request, "reference"),
        },
    ),
    "order_cancel_replace": (
        ReplaceRejected,
        lambda request, seq: {
            "order_id": None,
            "orig_order_id": request.orig_order_id,
            "reason": _STAND_IN,
            "detail": "throttle exceeded",
            "reference": _number(request, "reference"),
            "label": _label(request),
        },
    ),
}


def _number(message: Message, name: str) -> int | None:
    """A proto2 optional integer field's value, or None when it is not set."""
    return int(getattr(message, name)) if message.HasField(name) else None


def _text(message: Message, name: str) -> str | None:
    """A proto2 optional string field's value, or None when it is not set."""
    return str(getattr(message, name)) if message.HasField(name) else None
