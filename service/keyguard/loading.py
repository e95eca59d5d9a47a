"""One loader for every file the CLI takes: settings (keyguard.yaml, worker and gateway configs, the keys inventory)
and input documents (policy inputs, waivers, stack outputs, key bindings).

It refuses what would otherwise pass silently or end in a traceback: a directory, binary or non-UTF-8 content, a
mapping with a duplicate key (the second `permissions:` would hide the first), non-finite numbers (`.nan`, `.inf`,
`1e999`), dates that do not exist (`2026-02-30`), and, through `StrictModel`, unknown fields at any depth.
Every error names the file, line and field, and none quotes the value it refuses: a value in the wrong place
(a token where an environment variable's name belongs, a URL with a password) is often a secret.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from keyguard.errors import ConfigError, KeyguardError

MAX_BYTES = 32 * 1024 * 1024  # far above any settings file or policy input; stops `--config /dev/zero`
MAX_VALUES = 1_000_000  # values after YAML aliases are expanded, which validation does

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
# What an RFC 3339 date or time looks like; one that looks like it must be a real one (no 2026-02-30).
_DATE_SHAPED = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?$")
_YAML_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_YAML_MERGE = "tag:yaml.org,2002:merge"
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- models -------------------------------------------------------------------------------------------------


class StrictModel(BaseModel):
    """Base of every settings model: an unknown (misspelt) field is an error, at every depth."""

    model_config = ConfigDict(extra="forbid")


def env_name_problem(value: str) -> str | None:
    """Why `value` cannot be an environment variable's name, or None; the reason never repeats the value."""
    if not ENV_NAME.match(value):
        return (
            "must be the NAME of an environment variable (letters, digits and _, not starting with a digit), "
            "not its value; the value given is not repeated here"
        )
    if _looks_like_a_key(value):
        return (
            "looks like a key or token, not the NAME of an environment variable (such as KG_BOT_API_KEY); "
            "the value given is not repeated here"
        )
    return None


def _looks_like_a_key(value: str) -> bool:
    """Exchange keys are long runs of mixed-case letters and digits (Binance) or hex; names are UPPER_SNAKE."""
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
    return (len(value) >= 20 and mixed) or (len(value) >= 32 and "_" not in value)


def check_env_name(value: str, where: str = "value") -> str:
    """`value` if it is an environment variable's name; the refusal never repeats it (it is often the secret)."""
    problem = env_name_problem(value)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    return value


def _env_name(value: str) -> str:
    problem = env_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


EnvVarName = Annotated[str, AfterValidator(_env_name)]
"""A setting that names an environment variable (`api_key_env`, `api_token_env`, any `*_env`)."""


def _url_check(schemes: frozenset[str] | None, expected: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or not rest or not _URL_SCHEME.match(scheme):
            raise ValueError(f"not a URL; expected {expected} (the value is not repeated: it may hold a password)")
        if schemes is not None and scheme.lower() not in schemes:
            raise ValueError(f"unsupported URL scheme; expected {expected}")
        return value

    return check


def check_http_url(value: str, where: str) -> str:
    """`value` if it is an http(s) URL; the refusal never repeats it (it may hold a password)."""
    try:
        return _url_check(frozenset({"http", "https"}), "http(s)://host:port")(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


HttpUrlText = Annotated[str, AfterValidator(_url_check(frozenset({"http", "https"}), "http(s)://host:port"))]
DatabaseUrl = Annotated[
    str,
    AfterValidator(
        _url_check(
            frozenset({"sqlite", "postgresql", "postgres", "postgresql+psycopg"}),
            "sqlite:///path or postgresql://user@host:5432/db",
        )
    ),
]
AppriseUrl = Annotated[str, AfterValidator(_url_check(None, "an apprise URL such as json://host:port/path"))]


# --- reading and parsing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """A parsed file and where each of its keys and list items starts, to name lines in later errors."""

    path: Path
    data: Any
    lines: Mapping[Loc, int] = field(default_factory=dict)


def where(source: str, lines: Mapping[Loc, int], loc: Loc) -> str:
    """`file:line` of the longest prefix of `loc` whose line is known, else `file`."""
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return f"{source}:{line}"
    return source


def _field(loc: Loc) -> str:
    return f"field {path_text(loc)}" if loc else "top level"


def path_text(loc: Loc) -> str:
    """keys[0].credentials.api_key_env: how errors name a field."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is written or replaced (mtime, size, inode); None when it cannot be seen."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def read_text(path: Path, what: str = "file") -> str:
    """The file's text; a directory, a missing, binary, non-UTF-8 or enormous file is a ConfigError."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; expected {_a(what)} file")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; expected {_a(what)} file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc.__class__.__name__})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MiB; expected {_a(what)} file")
    if b"\x00" in raw:
        raise ConfigError(f"{path}: a binary file; expected {_a(what)} file (YAML or JSON text)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); expected {_a(what)} file") from None


def _a(what: str) -> str:
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"


def _problem_text(problem: str | None) -> str:
    """PyYAML's problem without quoted content (an alias, tag or token text may be the secret) but with its
    token names (`'<block end>'`) and single characters, which say what went wrong."""
    if not problem:
        return "syntax error"

    def keep(match: re.Match[str]) -> str:
        body = match.group(0)[1:-1]
        return match.group(0) if body.startswith("<") or len(body) <= 2 else "'…'"

    return re.sub(r"'[^']*'|\"[^\"]*\"", keep, problem)


def _yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    """file:line:column and the problem, never the offending line (PyYAML's str() quotes it)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        at = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        return ConfigError(f"{at}: invalid YAML: {_problem_text(exc.problem or exc.context)}")
    if isinstance(exc, yaml.reader.ReaderError):
        return ConfigError(f"{source}: invalid YAML: unacceptable character at byte {exc.position}")
    return ConfigError(f"{source}: invalid YAML ({exc.__class__.__name__})")


def _walk_nodes(root: yaml.Node, loader: Any, source: str, lines: dict[Loc, int]) -> None:
    """Refuse duplicate keys and impossible timestamps, and note each key's line; iterative, alias-safe."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    lines[()] = root.start_mark.line + 1
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _YAML_MERGE or not isinstance(key_node, yaml.ScalarNode):
                    stack.append((value_node, loc))
                    continue
                key, line = key_node.value, key_node.start_mark.line + 1
                ident = (key_node.tag, key)
                if ident in first:
                    inside = path_text(loc) or "the top level"
                    raise ConfigError(
                        f"{source}:{line}: duplicate key {key!r} in {inside} (first at line "
                        f"{first[ident]}); each key may appear once, or the later one silently "
                        "replaces the earlier"
                    )
                first[ident] = line
                lines[(*loc, key)] = line
                stack.append((value_node, (*loc, key)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*loc, index)] = item.start_mark.line + 1
                stack.append((item, (*loc, index)))
        elif isinstance(node, yaml.ScalarNode) and node.tag == _YAML_TIMESTAMP:
            try:
                loader.construct_yaml_timestamp(node)
            except ValueError:
                raise ConfigError(_not_a_date(source, lines, loc)) from None


def _not_a_date(source: str, lines: Mapping[Loc, int], loc: Loc) -> str:
    return (
        f"{where(source, lines, loc)}: {_field(loc)}: not a real date or time (a day "
        "that does not exist?); give an RFC 3339 time such as 2026-02-28T00:00:00Z"
    )


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[Loc, int]]:
    loader = _SafeLoader(text)
    lines: dict[Loc, int] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines
        _walk_nodes(node, loader, source, lines)
        data = loader.construct_document(node)
        _refuse_alias_bombs(data, source)
        return data, lines
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a settings file or input document") from None
    finally:
        loader.dispose()


_IN_PROGRESS = -1


def _refuse_alias_bombs(data: Any, source: str) -> None:
    """YAML aliases share one object however often it is used, but validating expands every use: cap the total
    (`a: &a [x, x, x]`, `b: &b [*a, *a, *a]`, ... is a billion values in a few lines)."""
    sizes: dict[int, int] = {}

    def size(value: Any) -> int:
        if not isinstance(value, dict | list):
            return 1
        known = sizes.get(id(value))
        if known == _IN_PROGRESS:
            raise ConfigError(f"{source}: a value contains itself (a recursive alias); write it out")
        if known is not None:
            return known
        sizes[id(value)] = _IN_PROGRESS
        total = 1
        for item in value.values() if isinstance(value, dict) else value:
            total += size(item)
            if total > MAX_VALUES:
                raise ConfigError(
                    f"{source}: expands to more than {MAX_VALUES:,} values (aliases used over and "
                    "over?); write the values out or use fewer aliases"
                )
        sizes[id(value)] = total
        return total

    size(data)


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as dup:
        starts = [m.start() for m in re.finditer(re.escape(json.dumps(dup.key)) + r"\s*:", text)]
        at = f"{source}:{text.count(chr(10), 0, starts[1]) + 1}" if len(starts) > 1 else source
        raise ConfigError(
            f"{at}: duplicate key {dup.key!r}; each key may appear once in an object, or the later "
            "one silently replaces the earlier"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a settings file or input document") from None


def _check_values(data: Any, source: str, lines: Mapping[Loc, int]) -> None:
    """Refuse non-finite numbers and date-shaped strings that are not real dates, naming the field."""
    stack: list[tuple[Any, Loc]] = [(data, ())]
    seen: set[int] = set()
    while stack:
        value, loc = stack.pop()
        if isinstance(value, dict | list):
            if id(value) in seen:  # YAML aliases share objects
                continue
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, (*loc, k if isinstance(k, int | str) else str(k))) for k, v in items)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(
                f"{where(source, lines, loc)}: {_field(loc)}: not a finite number "
                "(.nan, .inf and numbers too large for a float are refused); give a number"
            )
        elif isinstance(value, str) and _DATE_SHAPED.match(value):
            try:
                datetime.fromisoformat(value.replace("z", "Z"))
            except ValueError:
                raise ConfigError(_not_a_date(source, lines, loc)) from None


def parse_text(text: str, source: str, *, as_json: bool) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML (or JSON when `as_json`) with the refusals above; returns the data and its key lines."""
    lines: dict[Loc, int] = {}
    if as_json:
        data = _parse_json(text, source)
    else:
        data, lines = _parse_yaml(text, source)
    _check_values(data, source, lines)
    return data, lines


def load_file(path: Path, what: str = "input", as_json: bool | None = None) -> Loaded:
    """Read and parse a YAML or JSON file (unless `as_json` says: .json is JSON, anything else YAML)."""
    text = read_text(path, what)
    if not text.strip():
        raise ConfigError(f"{path}: the file is empty; expected {_a(what)} file")
    as_json = path.suffix.lower() == ".json" if as_json is None else as_json
    data, lines = parse_text(text, str(path), as_json=as_json)
    return Loaded(path, data, _json_lines(text) if as_json else lines)


def _json_lines(text: str) -> dict[Loc, int]:
    """Key lines of a JSON file, best effort: JSON is (almost always) YAML, whose parser keeps positions."""
    if len(text) > 1024 * 1024:  # a large generated document: errors name the field without the line
        return {}
    try:
        loader = _SafeLoader(text)
        try:
            node = loader.get_single_node()
            lines: dict[Loc, int] = {}
            if node is not None:
                _walk_nodes(node, loader, "", lines)
            return lines
        finally:
            loader.dispose()
    except (yaml.YAMLError, KeyguardError, RecursionError):
        return {}


def load_mapping(path: Path, what: str = "settings", as_json: bool | None = None) -> Loaded:
    """A file whose top level must be a mapping (every settings file and input document)."""
    loaded = load_file(path, what, as_json)
    if loaded.data is None:
        raise ConfigError(f"{path}: holds no {what} (only comments?); expected a mapping at the top level")
    if not isinstance(loaded.data, dict):
        kind = "a list" if isinstance(loaded.data, list) else f"a single {type(loaded.data).__name__} value"
        raise ConfigError(f"{path}: expected a mapping of {what} at the top level, got {kind}")
    bad = next((k for k in loaded.data if not isinstance(k, str)), None)
    if bad is not None:
        raise ConfigError(
            f"{where(str(path), loaded.lines, (str(bad),))}: top-level keys must be field names "
            f"(text), not a {type(bad).__name__}"
        )
    return loaded


# --- validation ---------------------------------------------------------------------------------------------


def _strings(value: Any, limit: int = 200) -> Iterator[str]:
    stack, count = [value], 0
    while stack and count < limit:
        item = stack.pop()
        count += 1
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _submodel(annotation: Any, part: str | int) -> Any:
    """The annotation one step down `part` (a field, list index or dict key), through Optional and Annotated."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _submodel(typing.get_args(annotation)[0], part)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _submodel(arg, part)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    if origin in (list, tuple, set, frozenset) and isinstance(part, int):
        return typing.get_args(annotation)[0]
    if origin is dict:
        return typing.get_args(annotation)[1]
    return None


def _known_fields(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names the model accepts at `loc` (for 'unknown field; expected one of ...')."""
    current: Any = model
    for part in loc:
        current = _submodel(current, part)
        if current is None:
            return []
    for candidate in (current, *typing.get_args(current)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return sorted(info.alias or name for name, info in candidate.model_fields.items())
    return []


def _message(error: Mapping[str, Any], model: type[BaseModel] | None) -> str:
    if error["type"] == "extra_forbidden":
        known = _known_fields(model, tuple(error["loc"][:-1])) if model is not None else []
        return "unknown field" + (f"; expected one of: {', '.join(known)}" if known else "")
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    for text in sorted(set(_strings(error.get("input"))), key=len, reverse=True):
        if len(text) >= 6:  # a validator that quoted what it refused; never show it
            message = message.replace(text, "the value given")
    return message


def validation_message(
    exc: ValidationError,
    source: str,
    lines: Mapping[Loc, int] | None = None,
    model: type[BaseModel] | None = None,
    limit: int = 5,
) -> str:
    """One line naming file, line and field of each problem (the first `limit`), never the input values."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        problems.append(f"{where(source, lines or {}, loc)}: {_field(loc)}: {_message(error, model)}")
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


def validate(model: type[M], data: Any, source: str, lines: Mapping[Loc, int] | None = None) -> M:
    """`model` from `data`; a ValidationError becomes a ConfigError naming file, line and field."""
    try:
        if _is_settings(model):  # pydantic-settings reads the environment only through __init__
            if not isinstance(data, dict):
                raise ConfigError(f"{source}: expected a mapping at the top level")
            return model(**data)
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source, lines, model)) from None


def _is_settings(model: type[BaseModel]) -> bool:
    settings = sys.modules.get("pydantic_settings")
    return settings is not None and issubclass(model, settings.BaseSettings)


def load_model(model: type[M], path: Path, what: str) -> M:
    """Read `path` (YAML or JSON) into `model`; errors name the file, line and field."""
    loaded = load_mapping(path, what)
    return validate(model, loaded.data, str(path), loaded.lines)


# --- the CLI's last line of defence -------------------------------------------------------------------------


def bad_input(exc: BaseException) -> tuple[str, int]:
    """What the CLI prints (one line, redacted, no input values) and its exit code for an exception that reached
    the top: 2 for bad input or usage; anything unexpected is 2 too (Keyguard could not judge), never a traceback."""
    from keyguard.redact import redact_text

    if isinstance(exc, KeyguardError):
        return redact_text(str(exc)), exc.exit_code
    if isinstance(exc, ValidationError):
        return redact_text(validation_message(exc, "input")), 2
    if isinstance(exc, yaml.YAMLError):
        return redact_text(str(_yaml_error(exc, "input"))), 2
    if isinstance(exc, json.JSONDecodeError):
        return f"input:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}", 2
    if isinstance(exc, UnicodeDecodeError):
        return f"input is not UTF-8 text (byte {exc.start})", 2
    if isinstance(exc, OSError) and exc.filename is not None:
        return redact_text(f"{exc.filename}: {exc.strerror or exc.__class__.__name__}"), 2
    frame = _raising_frame(exc)
    return (
        f"unexpected {exc.__class__.__name__}{frame}; Keyguard could not finish (set KEYGUARD_DEBUG=1 for the "
        "traceback; the message is not shown because it may quote an input value)"
    ), 2


def _raising_frame(exc: BaseException) -> str:
    tb, last = exc.__traceback__, None
    while tb is not None:
        if "keyguard" in tb.tb_frame.f_code.co_filename:
            last = tb
        tb = tb.tb_next
    if last is None:
        return ""
    name = last.tb_frame.f_code.co_filename.rsplit("keyguard", 1)[-1].lstrip("/\\")
    return f" in keyguard/{name}:{last.tb_lineno}"
