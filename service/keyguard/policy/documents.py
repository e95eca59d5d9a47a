"""Reading and validating policy input documents, with errors that name the file, line and field."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyguard.errors import ConfigError
from keyguard.loading import load_mapping
from keyguard.tools import schema_dir

if TYPE_CHECKING:  # jsonschema is imported when a document is validated (the CLI starts OPA first)
    from jsonschema import Draft202012Validator


def load_document(path: Path) -> dict[str, Any]:
    """Parse a JSON or YAML input document into a mapping; errors name the file, line and field (see loading)."""
    return _timestamps_as_text(load_mapping(path, "input document").data)


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
    from jsonschema import Draft202012Validator

    schema_path = Path(directory) / f"{kind}.schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    # Formats are checked too (rfc3339-validator is a dependency): `now: 2026-02-30T00:00:00Z` is refused with its
    # field here, for documents that reach the engine without the CLI's loader (the service's collectors, the pack).
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def known_kinds() -> list[str]:
    return sorted(p.name.removesuffix(".schema.json") for p in schema_dir().glob("*.schema.json"))


def validate_document(doc: dict[str, Any], source: str = "input") -> str:
    """Check `doc` against the JSON Schema of its kind; returns the kind or raises ConfigError naming the field."""
    from jsonschema.exceptions import best_match

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
        message = error.message  # jsonschema quotes the value it refuses; one long enough to be a secret is not shown
        if isinstance(error.instance, str) and len(error.instance) >= 6:
            message = message.replace(repr(error.instance), "the value given")
        raise ConfigError(f"{source}: field {field}: {message} (kind {kind!r})")
    return str(kind)
