"""Reading and validating policy input documents, with errors that name the file, line and field."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from keyguard.errors import ConfigError
from keyguard.tools import schema_dir


def load_document(path: Path) -> dict[str, Any]:
    """Parse a JSON or YAML file into a mapping; a syntax error names the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read file ({exc.__class__.__name__}: {exc})") from None
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    else:
        try:
            doc = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(doc).__name__}")
    return _timestamps_as_text(doc)


def _timestamps_as_text(value: Any) -> Any:
    """YAML turns unquoted timestamps into datetimes; policies compare RFC 3339 strings, so turn them back."""
    if isinstance(value, dict):
        return {k: _timestamps_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_timestamps_as_text(v) for v in value]
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    return value


@cache
def _validator(kind: str, directory: str) -> Draft202012Validator:
    schema_path = Path(directory) / f"{kind}.schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def known_kinds() -> list[str]:
    return sorted(p.name.removesuffix(".schema.json") for p in schema_dir().glob("*.schema.json"))


def validate_document(doc: dict[str, Any], source: str = "input") -> str:
    """Check `doc` against the JSON Schema of its kind; returns the kind or raises ConfigError naming the field."""
    kinds = known_kinds()
    kind = doc.get("kind")
    if kind is None:
        raise ConfigError(f"{source}: missing field 'kind'; expected one of: {', '.join(kinds)}")
    if kind not in kinds:
        raise ConfigError(f"{source}: unknown input kind {kind!r}; expected one of: {', '.join(kinds)}")
    validator = _validator(kind, str(schema_dir()))
    error = best_match(validator.iter_errors(doc))
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ConfigError(f"{source}: field {field}: {error.message} (kind {kind!r})")
    return str(kind)
