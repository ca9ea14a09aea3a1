"""Validation messages a TOML file deserves: key paths with stage and check names instead of
list indices, "did you mean" for unknown keys, and the line of the offending key.

pydantic reports ``('stages', 1, 'critical')``; an operator wrote ``[[stages]] name =
"replication"`` on line 12, so the message says ``line 14: stages[replication].critical``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ValidationError

# `[table]`, `[[array.of.tables]]` and `key = value` lines; quoted keys keep their quotes out.
_HEADER: Final = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY: Final = re.compile(
    r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+"
    r"|\"[^\"]*\"|'[^']*'))*)\s*="
)
_KEY_PART: Final = re.compile(r"[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'")

Location = tuple[str | int, ...]


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _KEY_PART.findall(text))


def key_lines(text: str) -> dict[Location, int]:
    """Where each key and table of a TOML document starts (1-based lines), by key path with
    array-of-tables indices (``('stages', 1, 'critical')``). Keys inside inline tables and
    multi-line values are not found; TOML's own parser keeps no positions."""
    lines: dict[Location, int] = {}
    counts: dict[tuple[str, ...], int] = {}
    table: Location = ()
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            in_multiline = line.count('"""') % 2 == 0 and line.count("'''") % 2 == 0
            continue
        header = _HEADER.match(line)
        if header:
            names = _dotted(header.group(2))
            if header.group(1) == "[[":
                counts[names] = counts.get(names, -1) + 1
                table = (*names, counts[names])
            else:
                table = names
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((*table, *_dotted(key.group(1))), number)
            rest = line[key.end() :]
            in_multiline = rest.count('"""') % 2 == 1 or rest.count("'''") % 2 == 1
    return lines


def _written(data: Any, location: Location) -> Location:
    """``location`` without what pydantic adds and the file does not have: the tag of a
    tagged union (``('preflight', 0, 'free_space', 'min_free')`` is ``preflight[0].min_free``
    in the file, whose `kind` says ``free_space``)."""
    kept: list[str | int] = []
    node: Any = data
    for part in location:
        if isinstance(node, dict) and part not in node and node.get("kind") == part:
            continue
        kept.append(part)
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return tuple(kept)


def _named(data: Any, location: Location) -> str:
    """``stages.1.critical`` as ``stages[replication].critical`` (list items by their `name`
    where they have a usable one, else by index)."""
    parts: list[str] = []
    node: Any = data
    for part in location:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            label = name if isinstance(name, str) and name else str(part)
            parts[-1:] = [f"{parts[-1] if parts else ''}[{label}]"]
            node = item
            continue
        parts.append(part)
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def _model_at(model: type[BaseModel], location: Location) -> list[type[BaseModel]]:
    """The models that may hold the keys at ``location`` (a union gives several)."""
    models = [model]
    for part in location:
        if isinstance(part, int):
            continue
        found: list[type[BaseModel]] = []
        for current in models:
            field = current.model_fields.get(part) or next(
                (f for f in current.model_fields.values() if f.alias == part), None
            )
            if field is not None:
                found.extend(_models_in(field.annotation))
        if not found and all(part not in current.model_fields for current in models):
            continue  # dict[str, Model]: the key is a name (a host, a stage), not a field
        models = found
    return models


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_in(arguments[0])
    if origin is dict:
        return _models_in(arguments[1])
    if origin in (list, tuple, typing.Union, types.UnionType):
        return [model for argument in arguments for model in _models_in(argument)]
    return []


def _suggestion(model: type[BaseModel], location: Location) -> str:
    known: set[str] = set()
    for candidate in _model_at(model, location[:-1]):
        for name, field in candidate.model_fields.items():
            known.add(field.alias or name)
    unknown = str(location[-1])
    matches = difflib.get_close_matches(unknown, sorted(known), n=1, cutoff=0.6)
    return f"unknown key; did you mean {matches[0]!r}?" if matches else "unknown key"


def format_errors(
    error: ValidationError, model: type[BaseModel], data: Mapping[str, Any], text: str | None
) -> list[str]:
    """One line per problem: ``[line N: ]key.path: message``."""
    lines = key_lines(text) if text is not None else {}
    located: list[tuple[int, str]] = []
    for item in error.errors():
        location = _written(data, tuple(item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = _suggestion(model, location)
        elif item["type"].endswith("_type"):  # strict: no coercion, so say what was written
            message = f"{message}, not {item['input']!r}"
        where = _named(dict(data), location)
        line = next(
            (
                lines[location[:end]]
                for end in range(len(location), 0, -1)
                if location[:end] in lines
            ),
            None,
        )
        text_line = f"line {line}: {where}: {message}" if line else f"{where}: {message}"
        located.append((line or 0, text_line))
    return [text_line for _line, text_line in sorted(located, key=lambda pair: pair[0])]
