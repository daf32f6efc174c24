"""Words for the operator's log: counts that agree with their nouns."""

from __future__ import annotations


def counted(n: int, one: str, many: str = "") -> str:
    """``1 resume``, ``2 resumes``: a count and its noun, singular or plural (``many``: ``one`` + s)."""
    return f"{n} {one if n == 1 else many or one + 's'}"
