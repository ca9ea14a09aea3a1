"""Proof beyond the exit code (issue 16): one module per backup kind, found by name, each a
pure judge over its tool's own records plus the small command that reads them on the host.

A kind module provides ``KIND``, ``argv(params)`` (the listing command), ``judge(output,
started_at, params)`` (the decision), ``describe(params)`` (for `plan`) and
``direct_params(unit, exec_argv)`` (what can be learnt without the NixOS module).
Adding a backup kind is adding a file here and a row in ``deploy_guard/kinds.toml``
(whose ``proof_units`` make ``UNIT_KINDS``).
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Protocol, cast

from deploy_guard.artifact.base import (
    Artifact,
    ArtifactStatus,
    CheckOutput,
    Params,
    unverified,
)
from deploy_guard.kinds import KINDS

__all__ = [
    "UNIT_KINDS",
    "Artifact",
    "ArtifactStatus",
    "CheckOutput",
    "ProofKind",
    "kind_for_unit",
    "load_kind",
]


class ProofKind(Protocol):
    """What a module of this package provides."""

    KIND: str

    def argv(self, params: Params) -> list[str]: ...

    def judge(self, output: CheckOutput, started_at: datetime, params: Params) -> Artifact: ...

    def describe(self, params: Params) -> str: ...

    def direct_params(self, unit: str, exec_argv: Sequence[str]) -> dict[str, Any]: ...


# NixOS unit names (FIELD-NOTES table) -> the kind that proves them: deploy_guard/kinds.toml.
UNIT_KINDS: Final = tuple(
    (pattern, kind.proof) for kind in KINDS if kind.proof for pattern in kind.proof_units
)
# Helper units of a kind (its `exclude`) are never proven, whatever their name.
_HELPERS: Final = tuple(pattern for kind in KINDS for pattern in kind.exclude)
_KINDS: Final = (*dict.fromkeys(kind.proof for kind in KINDS if kind.proof), "command")


def kind_for_unit(unit: str) -> str | None:
    """The kind that proves ``unit`` by its name, None when no built-in kind does."""
    if any(fnmatch.fnmatchcase(unit, pattern) for pattern in _HELPERS):
        return None
    return next((kind for pattern, kind in UNIT_KINDS if pattern.fullmatch(unit)), None)


def load_kind(kind: str) -> ProofKind:
    """The module of ``kind``.

    Raises:
        ValueError: no such kind.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown proof kind {kind!r}")
    return cast(ProofKind, importlib.import_module(f"deploy_guard.artifact.{kind}"))


def judge(kind: str, output: CheckOutput, started_at: datetime, params: Params) -> Artifact:
    """``kind``'s decision; a judge that trips over an answer proves nothing (unverified)."""
    try:
        return load_kind(kind).judge(output, started_at, params)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return unverified(kind, f"cannot read the answer: {exc}")
