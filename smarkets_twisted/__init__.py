"""A Twisted client for the Smarkets streaming API, with a simulated exchange."""
