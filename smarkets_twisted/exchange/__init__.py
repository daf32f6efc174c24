"""The simulated Smarkets exchange: the same protocol as production, on one machine.

The domain core is sans-io, plain method calls in, lists of domain events
out: ``accounts`` (credentials, balances, each account's sequenced event
history), ``catalogue`` (events, markets, contracts), ``engine`` (matching,
over ``book`` and ``orders``), ``ledger`` (each account's positions and
exposure per market), ``events`` (what the engine reports).  ``messages``
writes those events as seto payloads; ``service`` ties the core to the
``sessions`` registry (what a client can resume) and ``server``, the
protocol of one connection; ``tap`` makes it a twistd service, and
``liquidity`` keeps a demo market moving.
"""
