"""Run a user-registered ONNX text encoder with onnxruntime (CPU execution provider only)."""

from __future__ import annotations

import numpy as np

KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxEncoder:
    """``encoder(ids, mask, types)`` runs the graph and returns the chosen output as float32.

    The graph's inputs must be named among ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64,
    ``[batch, tokens]``); it gets those it declares. ``output`` names the output to read (default: the first),
    ``[batch, tokens, dim]`` for token vectors to pool or ``[batch, dim]`` with pooling ``none``.
    """

    def __init__(self, model: bytes, output: str | None = None) -> None:
        """``model``: the ``model.onnx`` bytes as verified against the manifest. A graph that keeps its weights
        in external data files does not load (those files would not be covered by the content hash)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1  # one thread per job, as for numpy (coprocessor/ai/__init__.py)
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self._session.get_inputs()]
        unknown = [name for name in self.inputs if name not in KNOWN_INPUTS]
        if unknown:
            raise ValueError(f"the ONNX graph takes inputs {unknown}; only {', '.join(KNOWN_INPUTS)} are supplied")
        outputs = [o.name for o in self._session.get_outputs()]
        if output is not None and output not in outputs:
            raise ValueError(f"the ONNX graph has no output {output!r}; it has {outputs}")
        self.output = output or outputs[0]

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        (result,) = self._session.run([self.output], {name: feeds[name] for name in self.inputs})
        return np.asarray(result, dtype=np.float32)
