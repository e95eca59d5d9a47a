"""Where in the user's files a finding's resource is written: the YAML/JSON node of a declared document, or the
line of a Pulumi program that names the resource. Code scanning shows the alert on that line."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class SourceLocation:
    path: Path
    line: int = 1  # 1-based; 1 when the file gives nothing better
    column: int = 1


# Fields whose value names an entity in a finding's resource (`binance/bot-exec-1`, `vendor/acme`,
# `worker-1/golive/paper`, `SecurityGroup/exec-sg`, `key/bot-exec-1`).
IDENTIFYING = frozenset({"id", "name", "value", "stage", "worker", "key", "urn"})
# Counts towards a match but does not identify anything alone (many keys share an exchange).
QUALIFYING = frozenset({"exchange"})


def compose(path: Path) -> yaml.Node | None:
    """The document's node tree with line marks; None when it does not parse (its loader reported that)."""
    try:
        return yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _occurs(value: str, resource: str) -> bool:
    """`value` is a whole /-separated part (or run of parts) of the resource."""
    return bool(value) and (resource == value or resource.startswith(value + "/") or resource.endswith("/" + value)
                            or f"/{value}/" in resource)


@dataclass
class _Candidate:
    score: int
    agreement: int
    node: yaml.Node
    anchor: yaml.Node  # where to point when no evidence field is spelt out: the identifying field's key


def locate_node(root: yaml.Node | None, resource: str, evidence: Mapping[str, Any]) -> tuple[int, int] | None:
    """(line, column) of the node that best names `resource`, refined to the field its evidence is about."""
    if root is None:
        return None
    candidates: list[_Candidate] = []
    _walk(root, resource, evidence, 0, frozenset(), candidates)
    if not candidates:
        return None
    best = max(candidates, key=lambda c: (c.score, c.agreement, -c.node.start_mark.line))
    target = best.anchor
    if isinstance(best.node, yaml.MappingNode):
        target = _evidence_field(best.node, evidence) or target
    return target.start_mark.line + 1, target.start_mark.column + 1


def _walk(node: yaml.Node, resource: str, evidence: Mapping[str, Any], score: int, used: frozenset[str],
          out: list[_Candidate]) -> None:
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _walk(item, resource, evidence, score, used, out)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    fields = {k.value: (k, v.value) for k, v in node.value
              if isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.ScalarNode)}
    own = sorted(((v, k) for name, (k, v) in fields.items()
                  if name in IDENTIFYING and v not in used and _occurs(v, resource)), key=lambda m: -len(m[0]))
    if own:
        qualifiers = [v for name, (_, v) in fields.items()
                      if name in QUALIFYING and v not in used and _occurs(v, resource)]
        score += sum(len(v) for v in [*(v for v, _ in own), *qualifiers])
        used = used | {v for v, _ in own} | set(qualifiers)
        agreement = sum(1 for name, v in evidence.items()
                        if name in fields and not isinstance(v, dict | list) and _same(v, fields[name][1]))
        out.append(_Candidate(score, agreement, node, own[0][1]))
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        if key.value not in used and _occurs(key.value, resource):  # `positions: {BTC: ...}`, `golive:`
            child_score, child_used = score + len(key.value), used | {key.value}
            out.append(_Candidate(child_score, 0, key, key))
        else:
            child_score, child_used = score, used
        _walk(value, resource, evidence, child_score, child_used, out)


def _same(value: Any, text: str) -> bool:
    if isinstance(value, bool):
        return text.lower() == str(value).lower()
    return str(value) == text


def _evidence_field(node: yaml.MappingNode, evidence: Mapping[str, Any]) -> yaml.Node | None:
    """The key node, inside `node`, of the first evidence field the document spells out (breadth first)."""
    for field in evidence:
        for key in _keys_breadth_first(node):
            if key.value == field:
                return key
    return None


def _keys_breadth_first(node: yaml.Node) -> Iterator[yaml.ScalarNode]:
    queue = [node]
    while queue:
        current = queue.pop(0)
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    yield key
                queue.append(value)
        elif isinstance(current, yaml.SequenceNode):
            queue.extend(current.value)


def locate_in_document(path: Path, resource: str, evidence: Mapping[str, Any],
                       root: yaml.Node | None = None) -> SourceLocation:
    found = locate_node(root if root is not None else compose(path), resource, evidence)
    return SourceLocation(path, *found) if found else SourceLocation(path)


# Directories of a Pulumi program that are not its source.
_SKIP_DIRS = frozenset({"__pycache__", "venv", ".venv", "node_modules", "site-packages"})
_MAX_SOURCE_FILES = 500


def program_sources(program: Path) -> list[Path]:
    """__main__.py first, then the program's other Python files."""
    main = program / "__main__.py"
    others = sorted(p for p in program.rglob("*.py") if p != main and not any(
        part in _SKIP_DIRS or part.startswith(".") for part in p.relative_to(program).parts[:-1]))
    return [main, *others][:_MAX_SOURCE_FILES]


def locate_in_program(program: Path, resource: str, sources: list[Path] | None = None) -> SourceLocation:
    """The first line of the program that spells the resource's name as a string literal, else __main__.py."""
    name = resource.rsplit("/", 1)[-1]
    literal = re.compile(rf"""(["']){re.escape(name)}\1""")
    for source in sources if sources is not None else program_sources(program):
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            match = literal.search(line)
            if match:
                return SourceLocation(source, number, match.start() + 1)
    return SourceLocation(program / "__main__.py")
