"""``teebridge models hash|register|list`` and the request command's hex-to-bytes input coercion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ai_testdata import tiny_onnx_model

from coprocessor.ai.builtin import BUILTIN_MODEL_HASH
from coprocessor.ai.manifest import manifest_for_directory
from teebridge.cli import _coerce, main

BUILTIN = "0x" + BUILTIN_MODEL_HASH.hex()


def test_hash_builtin_and_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "hash", "builtin"]) == 0
    assert capsys.readouterr().out.strip() == BUILTIN
    tiny_onnx_model(tmp_path / "tiny")
    assert main(["models", "hash", str(tmp_path / "tiny"), "--json"]) == 0
    first, _, manifest = capsys.readouterr().out.partition("\n")
    assert first == "0x" + manifest_for_directory(tmp_path / "tiny").model_hash().hex()
    assert json.loads(manifest)["format"] == "onnx"


def test_register_then_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny_onnx_model(tmp_path / "tiny")
    models = tmp_path / "models"
    assert main(["models", "register", str(tmp_path / "tiny"), "--name", "tiny", "--models-dir", str(models)]) == 0
    model_hash = capsys.readouterr().out.split()[0]
    stored = models / model_hash[2:]
    assert sorted(p.name for p in stored.iterdir()) == ["manifest.json", "model.onnx", "tokenizer.json"]
    assert json.loads((stored / "manifest.json").read_text())["modelHash"] == model_hash
    assert main(["models", "register", str(tmp_path / "tiny"), "--models-dir", str(models)]) == 0  # idempotent
    capsys.readouterr()
    assert main(["models", "list", "--models-dir", str(models)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [BUILTIN, model_hash]
    assert "tiny" in lines[1] and "onnx, mean pooling, normalized, 64 tokens" in lines[1]


def test_hash_of_a_directory_without_settings_says_what_to_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny_onnx_model(tmp_path / "tiny")
    (tmp_path / "tiny" / "teebridge-model.json").unlink()
    assert main(["models", "hash", str(tmp_path / "tiny")]) == 1
    assert 'has no teebridge-model.json; write one, e.g. {"pooling": "mean"' in capsys.readouterr().err
    assert main(["models", "hash", str(tmp_path / "missing")]) == 1
    assert "is not a directory" in capsys.readouterr().err


def test_request_values_for_bytes_inputs_may_be_hex() -> None:
    assert _coerce("bytes32", BUILTIN) == BUILTIN_MODEL_HASH
    assert _coerce("bytes", "0x0102") == b"\x01\x02"
    assert _coerce("string", "0x0102") == "0x0102"
    assert _coerce("bytes32[]", ["0x01"]) == ["0x01"]
