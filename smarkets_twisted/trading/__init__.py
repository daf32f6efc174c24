"""What a trader acts on, above the protocol core: prices, ids, orders,
positions, books and strategies.

It listens to the factory through handlers and never reaches into the
session or the protocol (see DESIGN.md).
"""
