"""Placeholder: filled in by issue 5."""

from __future__ import annotations


def register(sub) -> None:  # noqa: D103
    pass
