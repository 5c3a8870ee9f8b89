"""A BERT encoder forward pass in numpy (MiniLM is a 6-layer, 384-wide BERT), from safetensors weights.

Inference only (no dropout), float32, the exact (erf) GELU of the original model. It reproduces the
``transformers`` ``BertModel`` last hidden state; tests compare it to sentence-transformers' output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

MASK_VALUE = np.float32(np.finfo(np.float32).min)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), vectorised."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (sign * (1.0 - poly * np.exp(-a * a))).astype(x.dtype)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU with the error function (BERT's ``gelu``), not the tanh approximation."""
    return (0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))).astype(np.float32)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """Layer normalisation over the last axis."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + np.float32(eps)) * weight + bias).astype(np.float32)


class BertEncoder:
    """The encoder of a BERT model; ``encoder(ids, mask, types)`` gives the last hidden state ``[B, T, H]``."""

    def __init__(self, weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> None:
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported hidden_act {config.get('hidden_act')!r}; only 'gelu' (BERT's) is")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_positions = int(config["max_position_embeddings"])
        if self.hidden % self.heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

        def w(name: str) -> np.ndarray:
            key = prefix + name
            if key not in weights:
                raise ValueError(f"the weights lack {key}")
            return np.ascontiguousarray(weights[key], dtype=np.float32)

        self.word = w("embeddings.word_embeddings.weight")
        self.position = w("embeddings.position_embeddings.weight")
        self.token_type = w("embeddings.token_type_embeddings.weight")
        self.emb_ln = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self.blocks = []
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([w(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")])
            qkv_b = np.concatenate([w(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            self.blocks.append(
                {
                    "qkv": (np.ascontiguousarray(qkv_w.T), qkv_b),
                    "attn_out": (
                        np.ascontiguousarray(w(p + "attention.output.dense.weight").T),
                        w(p + "attention.output.dense.bias"),
                    ),
                    "attn_ln": (w(p + "attention.output.LayerNorm.weight"), w(p + "attention.output.LayerNorm.bias")),
                    "inter": (
                        np.ascontiguousarray(w(p + "intermediate.dense.weight").T),
                        w(p + "intermediate.dense.bias"),
                    ),
                    "out": (np.ascontiguousarray(w(p + "output.dense.weight").T), w(p + "output.dense.bias")),
                    "out_ln": (w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias")),
                }
            )

    @classmethod
    def from_bytes(cls, weights: bytes, config: bytes) -> BertEncoder:
        """Build from the bytes of ``model.safetensors`` (read as numpy arrays; no torch) and ``config.json``."""
        from safetensors.numpy import load

        return cls(load(weights), json.loads(config))

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        batch, length = input_ids.shape
        if length > self.max_positions:
            raise ValueError(f"{length} tokens exceed the model's {self.max_positions} positions")
        x = self.word[input_ids] + self.position[None, :length] + self.token_type[token_type_ids]
        x = layer_norm(x, *self.emb_ln, self.eps)
        head_dim = self.hidden // self.heads
        scale = np.float32(1.0 / np.sqrt(head_dim))
        bias = np.where(attention_mask[:, None, None, :] > 0, np.float32(0.0), MASK_VALUE).astype(np.float32)
        for blk in self.blocks:
            qkv = x @ blk["qkv"][0] + blk["qkv"][1]  # [B, T, 3H]
            qkv = qkv.reshape(batch, length, 3, self.heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # [B, heads, T, d]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, self.hidden)
            attn = context @ blk["attn_out"][0] + blk["attn_out"][1]
            x = layer_norm(attn + x, *blk["attn_ln"], self.eps)
            inter = gelu(x @ blk["inter"][0] + blk["inter"][1])
            out = inter @ blk["out"][0] + blk["out"][1]
            x = layer_norm(out + x, *blk["out_ln"], self.eps)
        return x.astype(np.float32)
