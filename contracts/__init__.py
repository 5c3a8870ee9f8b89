"""Solidity sources, their compiled artifacts, and the build step that makes them."""

from contracts.artifacts import Artifact, load_artifact

__all__ = ["Artifact", "load_artifact"]
