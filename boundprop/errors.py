"""Errors boundprop raises for bad input.

Every error carries a one-line message saying what went wrong, where (file, node, op) and what to
do about it; the CLI prints it without a traceback and exits with status 2.
"""

from __future__ import annotations


class BoundpropError(ValueError):
    """Base class: bad input given to boundprop (model, input set, option)."""

    def __init__(self, message: str) -> None:
        # One line, always: multi-line messages break the CLI contract.
        super().__init__(" ".join(str(message).split()))


class ModelLoadError(BoundpropError):
    """The file is not a readable, valid, safe ONNX model."""


class UnsupportedModelError(BoundpropError):
    """The model is valid ONNX but uses something boundprop cannot analyse (op, dtype, pattern)."""


class InputShapeError(BoundpropError):
    """The model's input shape is dynamic or ambiguous, or an input does not match it."""


class BoundpropNote(UserWarning):
    """Not an error: a remark on how the input was read (e.g. a dynamic batch dim fixed to 1);
    the CLI prints it once as a ``boundprop: note:`` line."""
