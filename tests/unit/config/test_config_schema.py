"""`deploy-guard schema config`: the JSON Schema of deploy-guard.toml agrees with the models,
describes every key, and accepts every configuration the docs show."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import jsonschema
import pytest

from deploy_guard.config import config_json_schema, parse_config
from deploy_guard.durations import parse_duration
from deploy_guard.errors import ConfigError

REPOSITORY_ROOT: Final = Path(__file__).resolve().parents[3]
TOML_BLOCK: Final = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)


@functools.cache
def validator() -> jsonschema.Draft202012Validator:
    schema = config_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(data: dict[str, Any]) -> list[str]:
    return [error.message for error in validator().iter_errors(data)]


def documented_configurations() -> Iterator[Any]:
    """Every ```toml block of the README and docs/, and every docs/examples/*.toml file."""
    pages = [REPOSITORY_ROOT / "README.md", *sorted((REPOSITORY_ROOT / "docs").rglob("*.md"))]
    for page in pages:
        for number, match in enumerate(TOML_BLOCK.finditer(page.read_text()), start=1):
            name = f"{page.relative_to(REPOSITORY_ROOT)}#{number}"
            yield pytest.param(match.group(1), id=name)
    for example in sorted((REPOSITORY_ROOT / "docs" / "examples").glob("*.toml")):
        yield pytest.param(example.read_text(), id=str(example.relative_to(REPOSITORY_ROOT)))


def properties(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (key path, property schema) in the schema, definitions included."""
    if isinstance(node, dict):
        for name, value in node.get("properties", {}).items():
            yield f"{path}.{name}", value
        for key, value in node.items():
            yield from properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from properties(value, f"{path}[{index}]")


def test_schema_command_prints_the_schema() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "deploy_guard", "schema", "config"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == config_json_schema()


def test_schema_is_valid_json_schema_2020_12() -> None:
    schema = config_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_key_is_described() -> None:
    found = list(properties(config_json_schema()))
    assert len(found) > 60  # every table, not only the top level
    undescribed = [path for path, schema in found if not schema.get("description")]
    assert undescribed == []


@pytest.mark.parametrize("key", ["poll_interval", "connect_timeout", "max_age"])
def test_durations_are_strings_with_their_pattern(key: str) -> None:
    schema = config_json_schema()["properties"][key]
    string = next(variant for variant in schema["anyOf"] if variant.get("type") == "string")
    assert string["pattern"]
    assert "90s" in string["description"]


@pytest.mark.parametrize(
    "text", ["90s", "5m", "1h30m", "2d", "250ms", "1.5h", "45", "1H", " 10m ", "1h 30m"]
)
def test_duration_pattern_accepts_what_the_parser_accepts(text: str) -> None:
    parse_duration(text)
    assert schema_errors({"poll_interval": text}) == []


@pytest.mark.parametrize("text", ["soon", "5 minutes", "m", "1h30", "-5m", ""])
def test_duration_pattern_rejects_what_the_parser_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
    assert schema_errors({"poll_interval": text}) != []


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"paralel": 2}, id="unknown-key"),
        pytest.param(
            {"stages": [{"name": "a", "timeout": "5m", "units": [], "critical": "yes"}]},
            id="string-for-bool",
        ),
        pytest.param({"hosts": {"forge": {"become": "doas"}}}, id="bad-become"),
        pytest.param({"parallel": "4"}, id="string-for-int"),
    ],
)
def test_schema_and_loader_both_reject(data: dict[str, Any]) -> None:
    assert schema_errors(data) != []
    with pytest.raises(ConfigError):
        parse_config(data)


@pytest.mark.parametrize("text", list(documented_configurations()))
def test_documented_configuration_is_valid(text: str) -> None:
    data = tomllib.loads(text)
    assert schema_errors(data) == []
    parse_config(data, text=text)


def test_the_docs_show_configurations() -> None:
    assert len(list(documented_configurations())) >= 5
