"""The API's error body, ``{"error": "one line"}``: shared by the app's handlers and decide."""

from __future__ import annotations


def one_line(message: object) -> str:
    """``message`` as one line (whitespace runs collapsed); ``error`` when empty."""
    return " ".join(str(message).split()) or "error"
