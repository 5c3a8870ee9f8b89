"""Model manifests and the model content hash.

A manifest names a model format, the SHA-256 of each of its files (by role) and its pre/post-processing
settings. Its canonical JSON (keys sorted, no whitespace, ASCII only, no floats) is hashed::

    modelHash = SHA-256( utf8("teebridge/v1/model") || canonicalJSON(manifest) )

    manifest = {"config": {...}, "files": {role: sha256 hex of the file, ...}, "format": FORMAT, "version": 1}

Formats and their files (role -> file name in a model directory):

- ``bert-safetensors``: ``weights`` = ``model.safetensors``, ``config`` = ``config.json`` (the BERT
  architecture), ``tokenizer`` = ``tokenizer.json``; run by the numpy forward pass (:mod:`coprocessor.ai.bert`).
- ``onnx``: ``model`` = ``model.onnx``, ``tokenizer`` = ``tokenizer.json``; run by onnxruntime.

Settings (``config``): ``pooling`` (``mean``, ``cls``, ``max``, or ``none`` for an ONNX graph whose output is
already one vector per text), ``normalize`` (bool: L2-normalise the pooled vector), ``maxSeqLength`` (1..512
tokens, longer texts are truncated), and for ONNX optionally ``output`` (the graph output to read; default
its first).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL_HASH_TAG = b"teebridge/v1/model"
MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"
SPEC_FILE = "teebridge-model.json"
"""Optional file in a model source directory giving ``{"pooling": ..., "normalize": ..., "maxSeqLength": ...}``."""

FORMAT_FILES: dict[str, dict[str, str]] = {
    "bert-safetensors": {"weights": "model.safetensors", "config": "config.json", "tokenizer": "tokenizer.json"},
    "onnx": {"model": "model.onnx", "tokenizer": "tokenizer.json"},
}
"""Per format: role -> the file's name in a model directory."""
POOLING_MODES = ("mean", "cls", "max", "none")
MAX_SEQ_LENGTH = 512
_CONFIG_KEYS = {"pooling", "normalize", "maxSeqLength", "output"}


class ManifestError(ValueError):
    """A manifest or model directory that is malformed; the message says what to fix."""


class ModelIntegrityError(ValueError):
    """A model's files do not match its manifest (tampered, truncated or replaced)."""


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, lower-case hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no whitespace, ASCII escapes; floats are refused (they have no single canonical form)."""
    _refuse_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ManifestError("manifest values must be strings, integers or booleans, not floats")
    if isinstance(value, Mapping):
        for v in value.values():
            _refuse_floats(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _refuse_floats(v)


@dataclass(frozen=True, slots=True)
class ModelManifest:
    """What a model is: its format, the SHA-256 of each file by role, and its processing settings."""

    format: str
    files: Mapping[str, str]
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in FORMAT_FILES:
            raise ManifestError(f"unknown model format {self.format!r}; expected one of {', '.join(FORMAT_FILES)}")
        object.__setattr__(self, "files", dict(self.files))
        object.__setattr__(self, "config", dict(self.config))
        roles = set(FORMAT_FILES[self.format])
        if set(self.files) != roles:
            raise ManifestError(
                f"a {self.format} model has exactly the files {sorted(roles)}, got {sorted(self.files)}"
            )
        for role, digest in self.files.items():
            if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
                raise ManifestError(f"files.{role} must be a lower-case hex SHA-256 (64 digits)")
        _check_config(self.format, self.config)

    def to_json(self) -> dict[str, Any]:
        """The manifest as the JSON object that is hashed."""
        return {
            "config": dict(self.config),
            "files": dict(self.files),
            "format": self.format,
            "version": MANIFEST_VERSION,
        }

    def canonical(self) -> bytes:
        """The canonical JSON bytes of :meth:`to_json`."""
        return canonical_json(self.to_json())

    def model_hash(self) -> bytes:
        """The 32-byte content hash: SHA-256 over the tag and the canonical manifest."""
        return hashlib.sha256(MODEL_HASH_TAG + self.canonical()).digest()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelManifest:
        """Parse a manifest object (as written by :meth:`to_json`)."""
        if not isinstance(data, Mapping):
            raise ManifestError("a manifest is a JSON object")
        if data.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"manifest version must be {MANIFEST_VERSION}, got {data.get('version')!r}")
        extra = set(data) - {"config", "files", "format", "version"}
        if extra:
            raise ManifestError(f"unknown manifest fields: {sorted(extra)}")
        files, config = data.get("files"), data.get("config", {})
        if not isinstance(files, Mapping) or not isinstance(config, Mapping):
            raise ManifestError("manifest 'files' and 'config' must be objects")
        return cls(str(data.get("format")), files, config)


def _check_config(fmt: str, config: Mapping[str, Any]) -> None:
    extra = set(config) - _CONFIG_KEYS
    if extra:
        raise ManifestError(f"unknown config keys {sorted(extra)}; allowed: {sorted(_CONFIG_KEYS)}")
    if config.get("pooling") not in POOLING_MODES:
        raise ManifestError(f"config.pooling must be one of {', '.join(POOLING_MODES)}")
    if fmt != "onnx" and config["pooling"] == "none":
        raise ManifestError("config.pooling 'none' is only for ONNX graphs that output one vector per text")
    if not isinstance(config.get("normalize"), bool):
        raise ManifestError("config.normalize must be true or false")
    seq = config.get("maxSeqLength")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ_LENGTH:
        raise ManifestError(f"config.maxSeqLength must be an integer in 1..{MAX_SEQ_LENGTH}")
    if "output" in config and (fmt != "onnx" or not isinstance(config["output"], str) or not config["output"]):
        raise ManifestError("config.output (the graph output to read) is a non-empty string, for ONNX models only")


def detect_format(directory: Path) -> str:
    """The format of a model source directory, from which model file it holds."""
    found = [
        fmt
        for fmt, files in FORMAT_FILES.items()
        if (directory / files.get("model", files.get("weights", ""))).is_file()
    ]
    if len(found) != 1:
        raise ManifestError(
            f"{directory} must hold exactly one of model.safetensors (BERT weights) or model.onnx (an ONNX graph)"
        )
    return found[0]


def source_config(directory: Path, fmt: str) -> dict[str, Any]:
    """The processing settings of a source directory: ``teebridge-model.json`` if present, else those a
    sentence-transformers directory states (``1_Pooling/config.json``, ``sentence_bert_config.json``,
    ``modules.json``)."""
    spec = directory / SPEC_FILE
    if spec.is_file():
        try:
            config = json.loads(spec.read_text())
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{spec} is not JSON: {exc}") from None
        if not isinstance(config, dict):
            raise ManifestError(f"{spec} must be a JSON object")
        _check_config(fmt, config)
        return config
    pooling_file = directory / "1_Pooling" / "config.json"
    bert_file = directory / "sentence_bert_config.json"
    if not (pooling_file.is_file() and bert_file.is_file()):
        raise ManifestError(
            f"{directory} has no {SPEC_FILE}; write one, e.g. "
            '{"pooling": "mean", "normalize": true, "maxSeqLength": 256}'
        )
    pooling_cfg = json.loads(pooling_file.read_text())
    modes = [
        m
        for m, key in (
            ("mean", "pooling_mode_mean_tokens"),
            ("cls", "pooling_mode_cls_token"),
            ("max", "pooling_mode_max_tokens"),
        )
        if pooling_cfg.get(key)
    ]
    if len(modes) != 1 or any(pooling_cfg.get(k) for k in ("pooling_mode_mean_sqrt_len_tokens",)):
        raise ManifestError(f"{pooling_file}: only a single mean, cls or max pooling is supported")
    modules_file = directory / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
    normalize = any(str(m.get("type", "")).endswith(".Normalize") for m in modules)
    config = {
        "pooling": modes[0],
        "normalize": normalize,
        "maxSeqLength": int(json.loads(bert_file.read_text())["max_seq_length"]),
    }
    _check_config(fmt, config)
    return config


def manifest_for_directory(directory: Path) -> ModelManifest:
    """The manifest of a model source directory (its files hashed, its settings read)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ManifestError(f"{directory} is not a directory; give the directory holding the model files")
    fmt = detect_format(directory)
    files = {}
    for role, name in FORMAT_FILES[fmt].items():
        path = directory / name
        if not path.is_file():
            raise ManifestError(f"{directory} lacks {name} (the {role} file of a {fmt} model)")
        files[role] = sha256_file(path)
    return ModelManifest(fmt, files, source_config(directory, fmt))


def read_verified_files(manifest: ModelManifest, directory: Path) -> dict[str, bytes]:
    """The bytes of the model's files in ``directory``, each checked against the manifest's SHA-256.

    Each file is read once and the model is then built from these bytes, never from the path again, so a
    file swapped on disk after the check (the host is untrusted) is never used. Raises
    :class:`ModelIntegrityError` naming the first file that is missing or differs.
    """
    contents = {}
    for role, name in FORMAT_FILES[manifest.format].items():
        path = Path(directory) / name
        if not path.is_file():
            raise ModelIntegrityError(f"the {role} file ({name}) is missing")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != manifest.files[role]:
            raise ModelIntegrityError(f"the {role} file ({name}) does not match the SHA-256 in the manifest")
        contents[role] = data
    return contents
