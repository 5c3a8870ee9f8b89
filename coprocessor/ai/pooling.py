"""From per-token vectors to one vector per text: mean, CLS or max pooling, then optional L2 normalisation."""

from __future__ import annotations

import numpy as np

NORM_EPSILON = 1e-12


def pool(token_embeddings: np.ndarray, attention_mask: np.ndarray, mode: str) -> np.ndarray:
    """``[batch, tokens, dim]`` -> ``[batch, dim]``; padding (mask 0) is ignored. ``none``: already pooled."""
    if mode == "none":
        if token_embeddings.ndim != 2:
            raise ValueError(f"pooling 'none' needs a [batch, dim] output, got shape {token_embeddings.shape}")
        return token_embeddings.astype(np.float32)
    if token_embeddings.ndim != 3:
        raise ValueError(f"pooling {mode!r} needs a [batch, tokens, dim] output, got shape {token_embeddings.shape}")
    mask = attention_mask.astype(np.float32)[:, :, None]
    if mode == "mean":
        summed = (token_embeddings * mask).sum(axis=1)
        return (summed / np.clip(mask.sum(axis=1), 1e-9, None)).astype(np.float32)
    if mode == "cls":
        return token_embeddings[:, 0, :].astype(np.float32)
    if mode == "max":
        masked = np.where(mask > 0, token_embeddings, -np.inf)
        return masked.max(axis=1).astype(np.float32)
    raise ValueError(f"unknown pooling mode {mode!r}")


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit Euclidean length (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, NORM_EPSILON)).astype(np.float32)
