"""Cutting long texts into segments a model can say in one go: at the split pattern
(paragraphs), then at sentences, clauses and words, with neighbouring pieces joined again
while they fit."""

from __future__ import annotations

import re

__all__ = ["BREAKS", "split_text"]

#: where an over-long piece is cut, coarsest first: sentences, clauses, words
BREAKS = (r"(?<=[.!?…])\s+", r"(?<=[,;:—–])\s+", r"\s+")


def split_text(text: str, max_chars: int, split_pattern: str | None = r"\n+") -> list[str]:
    """``text`` as segments of at most ``max_chars`` characters where it can be cut.

    The text is first cut at ``split_pattern`` (None: not cut), and a part longer than
    ``max_chars`` at sentence ends, then clauses, then spaces; consecutive pieces of one part
    are joined (with a space) while the result fits. A single word longer than ``max_chars``
    stays whole. Empty pieces are dropped.

    Raises:
        ValueError: ``max_chars`` is not a positive int, or a bad ``split_pattern``.
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars <= 0:
        raise ValueError(f"max_chars must be a positive int, got {max_chars!r}")
    try:
        parts = re.split(split_pattern, text) if split_pattern else [text]
    except re.error as e:
        raise ValueError(f"split_pattern {split_pattern!r} is not a regular expression: {e}") from e
    return [piece for part in parts if part.strip() for piece in _fit(part.strip(), max_chars, 0)]


def _fit(text: str, limit: int, level: int) -> list[str]:
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    while len(parts) <= 1 and level < len(BREAKS):
        parts = [p for p in re.split(BREAKS[level], text) if p.strip()]
        level += 1
    if len(parts) <= 1:
        return [text]
    pieces: list[str] = []
    for part in parts:
        for piece in _fit(part, limit, level):
            if pieces and len(pieces[-1]) + 1 + len(piece) <= limit:
                pieces[-1] = f"{pieces[-1]} {piece}"
            else:
                pieces.append(piece)
    return pieces
