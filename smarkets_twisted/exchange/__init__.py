"""The simulated Smarkets exchange: accounts, catalogue and matching engine.

The domain core (``accounts``, ``catalogue``, ``engine``) is sans-io: plain
method calls in, lists of domain events out.  The server protocol turns those
events into protobuf messages.
"""
