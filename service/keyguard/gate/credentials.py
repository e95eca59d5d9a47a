"""Exchange and AWS credentials in added lines: where they are and what kind, never what they are.

Two kinds of evidence, to keep false positives low:
- exact shapes that are credentials on their own: an AWS access key id (AKIA/ASIA + 16 base-32 characters), a
  PEM private-key block, a Coinbase CDP key name (organizations/<uuid>/apiKeys/<uuid>);
- an exchange's key or secret shape (Binance 64 alphanumerics, OKX uuid key and 32-hex secret, Bybit 18/36
  alphanumerics, Kraken 56/88 base64, Coinbase 32-hex/88 base64 and 16/32 alphanumerics, AWS 40-character
  secret) only as the value assigned to a name that says it is a key or secret (`apiSecret:`,
  `BINANCE_API_KEY=`, `"secret": "..."`), and only when the value looks random (mixed characters, high entropy)
  and not like a placeholder.
A value is matched and measured here and then dropped: a Leak holds its file, line, column and kind only.
"""

from __future__ import annotations

import math
import re
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

from keyguard.gate.diff import AddedLine


@dataclass(frozen=True)
class LeakRule:
    id: str
    title: str
    remediation: str


def _remediation(revoke: str) -> str:
    return (f"Assume it leaked: {revoke}, create a new one (IP-restricted, least privilege) kept in the vault, and "
            "remove it from the branch history (rewrite the branch; a later commit that deletes it is not enough).")


LEAK_RULES: dict[str, LeakRule] = {rule.id: rule for rule in (
    LeakRule("KG-LEAK-101", "No AWS access key id is added to the repository",
             _remediation("deactivate and delete the access key in IAM now")),
    LeakRule("KG-LEAK-102", "No AWS secret access key is added to the repository",
             _remediation("deactivate and delete the access key in IAM now")),
    LeakRule("KG-LEAK-103", "No Binance API key or secret is added to the repository",
             _remediation("delete the API key at Binance now")),
    LeakRule("KG-LEAK-104", "No OKX API key or secret is added to the repository",
             _remediation("delete the API key at OKX now")),
    LeakRule("KG-LEAK-105", "No Bybit API key or secret is added to the repository",
             _remediation("delete the API key at Bybit now")),
    LeakRule("KG-LEAK-106", "No Kraken API key or private key is added to the repository",
             _remediation("delete the API key at Kraken now")),
    LeakRule("KG-LEAK-107", "No Coinbase API key or secret is added to the repository",
             _remediation("delete the API key at Coinbase now")),
    LeakRule("KG-LEAK-108", "No private key block is added to the repository",
             _remediation("revoke the key wherever it is registered (an exchange's Ed25519 or EC API key, "
                          "a deploy key)")),
)}


@dataclass(frozen=True)
class Leak:
    path: str
    line: int
    column: int  # 1-based, where the value starts
    rule_id: str
    kind: str  # what was found, e.g. "Binance API secret"; never the value


@dataclass(frozen=True)
class _Shape:
    rule_id: str
    exchange: str  # the word that names it in a line or a path
    kind: str
    pattern: re.Pattern[str]
    classes: str  # character classes a real value has: u(pper), l(ower), a (any letter), d(igit)
    min_entropy: float


_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_SHAPES: tuple[_Shape, ...] = (
    _Shape("KG-LEAK-103", "binance", "Binance API key or secret", re.compile(r"[A-Za-z0-9]{64}"), "uld", 4.5),
    _Shape("KG-LEAK-104", "okx", "OKX API key", re.compile(_UUID), "ld", 3.0),
    _Shape("KG-LEAK-104", "okx", "OKX API secret", re.compile(r"[0-9A-F]{32}|[0-9a-f]{32}"), "d", 3.0),
    _Shape("KG-LEAK-105", "bybit", "Bybit API key", re.compile(r"[A-Za-z0-9]{18}"), "ad", 3.2),
    _Shape("KG-LEAK-105", "bybit", "Bybit API secret", re.compile(r"[A-Za-z0-9]{36}"), "uld", 4.0),
    _Shape("KG-LEAK-106", "kraken", "Kraken API key", re.compile(r"[A-Za-z0-9/+]{54}[A-Za-z0-9/+=]{2}"), "uld", 4.5),
    _Shape("KG-LEAK-106", "kraken", "Kraken private key", re.compile(r"[A-Za-z0-9/+]{86}=="), "uld", 5.0),
    _Shape("KG-LEAK-107", "coinbase", "Coinbase API key", re.compile(r"[0-9a-f]{32}"), "d", 3.0),
    _Shape("KG-LEAK-107", "coinbase", "Coinbase API key", re.compile(r"[A-Za-z0-9]{16}"), "uld", 3.0),
    _Shape("KG-LEAK-107", "coinbase", "Coinbase API secret", re.compile(r"[A-Za-z0-9/+]{86}==|[A-Za-z0-9]{32}"),
           "ld", 3.8),
)
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")

# Credentials by their shape alone.
_AWS_ACCESS_KEY = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z2-7]{16}(?![A-Za-z0-9])")
_PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_COINBASE_KEY_NAME = re.compile(rf"organizations/{_UUID}/apiKeys/{_UUID}")

# `name: value`, `name = "value"`, `"name": "value"`, `NAME=value`, `name := value`, `name => value`.
_ASSIGNMENT = re.compile(
    r"""(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)["']?\s*(?:=>|:=|[:=])\s*(?:[A-Za-z]?["'`])?(?P<value>[^\s"'`,;)}\]]+)"""
)
# A name that says its value is a key or a secret (normalised: lower case, no separators).
_SECRET_NAME = re.compile(r"secret|apikey|accesskey|privatekey|passphrase|signingkey|key$")
_NOT_SECRET_NAME = re.compile(r"publickey|pubkey|keyname$|keytype$|keyfile$|keypath$|keyprefix$|kmskey|sshkey"
                              r"|idempotencykey|cachekey|sortkey|partitionkey|primarykey|foreignkey")
_EXCHANGES = {"binance": "binance", "okx": "okx", "okex": "okx", "bybit": "bybit", "kraken": "kraken",
              "coinbase": "coinbase", "cbpro": "coinbase", "gdax": "coinbase"}
_EXCHANGE_WORD = re.compile("|".join(_EXCHANGES))
_LABEL = {"binance": "Binance", "okx": "OKX", "bybit": "Bybit", "kraken": "Kraken", "coinbase": "Coinbase"}
_AWS_WORD = re.compile(r"(?<![a-z])aws")
_PLACEHOLDER = re.compile(r"(?i)example|sample|placeholder|changeme|change_me|dummy|fake|redacted|your|xxxx|\*\*\*"
                          r"|\.\.\.|<|>|\$\{|\{\{|%\(|0000000|1234567|abcdef[g-z]")


# How far above a value an added line may name its exchange (`exchange: binance` over `api_secret: ...`).
NEARBY_LINES = 5


def scan(lines: Iterable[AddedLine]) -> list[Leak]:
    """Every credential in the added lines, one per (file, line, rule), in diff order."""
    leaks: dict[tuple[str, int, str], Leak] = {}
    recent: deque[AddedLine] = deque(maxlen=NEARBY_LINES)
    for added in lines:
        nearby = " ".join(r.text for r in recent if r.path == added.path and added.line - r.line <= NEARBY_LINES)
        for leak in _scan_line(added, nearby.lower()):
            leaks.setdefault((leak.path, leak.line, leak.rule_id), leak)
        recent.append(added)
    return list(leaks.values())


def _scan_line(added: AddedLine, nearby: str) -> Iterable[Leak]:
    text = added.text
    for match in _AWS_ACCESS_KEY.finditer(text):
        if not _PLACEHOLDER.search(match.group()):
            yield Leak(added.path, added.line, match.start() + 1, "KG-LEAK-101", "AWS access key id")
    for match in _PRIVATE_KEY_BLOCK.finditer(text):
        if _PLACEHOLDER.search(text[match.end():]):  # "-----BEGIN ... KEY-----\nEXAMPLE" in a test fixture
            continue
        yield Leak(added.path, added.line, match.start() + 1, "KG-LEAK-108", "private key block (PEM)")
    for match in _COINBASE_KEY_NAME.finditer(text):
        yield Leak(added.path, added.line, match.start() + 1, "KG-LEAK-107", "Coinbase CDP API key name")
    lowered_line, lowered_path = text.lower(), added.path.lower()
    for match in _ASSIGNMENT.finditer(text):
        name = re.sub(r"[^a-z0-9]", "", match.group("name").lower())
        if not _SECRET_NAME.search(name) or _NOT_SECRET_NAME.search(name):
            continue
        value = match.group("value")
        if len(value) < 16 or _PLACEHOLDER.search(value):
            continue
        kind = _classify(value, name, lowered_line, f"{lowered_path} {nearby}")
        if kind is not None:
            yield Leak(added.path, added.line, match.start("value") + 1, *kind)


def _classify(value: str, name: str, line: str, around: str) -> tuple[str, str] | None:
    """(rule id, kind) of a value assigned to a secret-looking name, or None when it is no credential shape.
    `around` is the file's path and the added lines just above, where the exchange is often named."""
    aws = "secretaccesskey" in name or any(_AWS_WORD.search(text) for text in (name, line, around))
    if aws and "secret" in name and _AWS_SECRET.fullmatch(value) and _looks_random(value, "ld", 4.0):
        return "KG-LEAK-102", "AWS secret access key"
    named = next((_EXCHANGES[w] for text in (name, line, around) for w in _EXCHANGE_WORD.findall(text)), None)
    for shape in _SHAPES:
        if named is not None and shape.exchange != named:
            continue
        if shape.pattern.fullmatch(value) and _looks_random(value.replace("-", ""), shape.classes,
                                                           shape.min_entropy):
            kind = shape.kind if named else f"exchange API key or secret ({_LABEL[shape.exchange]} shape)"
            return shape.rule_id, kind
    return None


def _looks_random(value: str, classes: str, min_entropy: float) -> bool:
    present = {"u": any(c.isupper() for c in value), "l": any(c.islower() for c in value),
               "a": any(c.isalpha() for c in value), "d": any(c.isdigit() for c in value)}
    if not all(present[c] for c in classes):
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= min_entropy
