"""onnxruntime, the ground truth for what a model computes.

``OrtModel`` runs the real ONNX file on one input or a stack of inputs (one ``run`` per sample
when the model's batch dimension is static).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from boundprop.errors import BoundpropError

# Threads of every onnxruntime session when the caller gives none (0 = onnxruntime's default,
# one per core); the batch runner sets 1 in its workers so that N workers use N cores.
THREADS_ENV = "BOUNDPROP_THREADS"

_NP_OF_ORT = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(float16)": np.float16}


def ort_threads(threads: int = 0) -> int:
    """Intra-op threads for an onnxruntime session: ``threads`` when > 0, else
    ``$BOUNDPROP_THREADS`` when set, else 0 (onnxruntime's default)."""
    if threads > 0:
        return threads
    try:
        return max(0, int(os.environ.get(THREADS_ENV, "0")))
    except ValueError:
        return 0


class OrtModel:
    """An onnxruntime session of a model, fed like :class:`boundprop.ir.Network`."""

    def __init__(self, path: str | os.PathLike, input_name: str | None = None,
                 output_name: str | None = None, input_shape: tuple[int, ...] | None = None,
                 threads: int = 0) -> None:
        import onnxruntime as ort  # lazy: heavy, and only the sessions need it

        # Fatal messages only: onnxruntime's errors arrive as exceptions (turned into one-line
        # errors here); its coloured multi-line log would only repeat them.
        ort.set_default_logger_severity(4)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = ort_threads(threads)
        opts.log_severity_level = 4
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise BoundpropError(f"{path}: onnxruntime cannot load the model ({first})") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.input = inputs[input_name] if input_name else self.session.get_inputs()[0]
        self.output_name = output_name or self.session.get_outputs()[0].name
        self.dtype = _NP_OF_ORT.get(self.input.type, np.float32)
        shape = input_shape or tuple(d if isinstance(d, int) else 1 for d in self.input.shape)
        self.input_shape = tuple(shape)

    def __call__(self, x: Any) -> np.ndarray:
        """Output for ``x`` of the input shape, or a stack ``(S, *input_shape)`` of them."""
        x = np.asarray(x)
        single = x.shape == self.input_shape
        xs = x[None] if single else x
        try:
            outs = [self.session.run([self.output_name],
                                     {self.input.name: xi.astype(self.dtype)})[0] for xi in xs]
        except Exception as e:  # onnxruntime refuses the model at run time (bad attributes)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise BoundpropError(f"onnxruntime cannot run the model ({first})") from None
        y = np.stack(outs).astype(np.float64)
        return y[0] if single else y
