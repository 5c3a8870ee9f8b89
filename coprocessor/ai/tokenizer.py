"""Text to token ids with a Hugging Face ``tokenizer.json`` (the ``tokenizers`` library; no network)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, slots=True)
class TokenBatch:
    """Padded int64 arrays of shape ``[batch, tokens]``, as BERT-style encoders take them."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


class TextTokenizer:
    """Tokenizes texts with the special tokens, truncation at ``max_seq_length`` and right padding.

    The padding and truncation written in ``tokenizer.json`` are replaced by these (sentence-transformers
    does the same: its ``max_seq_length`` wins over the file's).
    """

    def __init__(self, source: bytes | Path, max_seq_length: int) -> None:
        """``source``: the ``tokenizer.json`` bytes (as verified against a manifest), or its path."""
        from tokenizers import Tokenizer

        text = source.decode("utf-8") if isinstance(source, bytes) else Path(source).read_text(encoding="utf-8")
        self._tokenizer = Tokenizer.from_str(text)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_seq_length)
        pad = self._tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if pad is None else pad
        self.max_seq_length = max_seq_length

    def encode(self, texts: Sequence[str]) -> TokenBatch:
        """Token ids, attention mask and token type ids for ``texts``, padded to the longest."""
        encodings = self._tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = enc.attention_mask
            types[row, :n] = enc.type_ids
        return TokenBatch(ids, mask, types)
