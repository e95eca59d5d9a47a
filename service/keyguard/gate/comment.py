"""The gate's verdict from its checks' SARIF reports and exit codes: counts, the PR comment (one, updated in place
by its marker) and the job summary. Everything here is read back from SARIF, so the comment says exactly what
code scanning shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyguard.errors import ConfigError
from keyguard.loading import load_file
from keyguard.policy.models import Severity

COMMENT_MARKER = "<!-- keyguard-gate -->"
MAX_ROWS = 50  # per check: a PR comment is at most 65,536 characters
SEVERITIES = (Severity.critical, Severity.high, Severity.medium, Severity.low)


@dataclass(frozen=True)
class CheckReport:
    name: str
    exit_code: int | None  # None: the check was not run
    sarif: Mapping[str, Any] | None  # None: it wrote no report
    every_result_blocks: bool = False  # the credential scan: any leak fails the gate, whatever its severity

    @property
    def results(self) -> list[dict[str, Any]]:
        if self.sarif is None:
            return []
        return [r for run in self.sarif.get("runs", []) for r in run.get("results", [])]

    @property
    def rules(self) -> dict[str, dict[str, Any]]:
        if self.sarif is None:
            return {}
        return {rule["id"]: rule for run in self.sarif.get("runs", [])
                for rule in run.get("tool", {}).get("driver", {}).get("rules", [])}

    @property
    def failed(self) -> bool:
        return self.exit_code is not None and (self.exit_code != 0 or self.sarif is None)


def read_report(name: str, path: Path | None, exit_code: int | None, every_result_blocks: bool = False
                ) -> CheckReport:
    """A check's report; a missing file is a check that stopped before writing it, not an empty one."""
    if path is None or exit_code is None:
        return CheckReport(name, exit_code, None, every_result_blocks)
    if not path.exists():
        return CheckReport(name, exit_code, None, every_result_blocks)
    log = load_file(path, "SARIF report", as_json=True).data
    if not isinstance(log, dict) or log.get("version") != "2.1.0" or not isinstance(log.get("runs"), list):
        raise ConfigError(f"{path}: not a SARIF 2.1.0 log (expected `version: 2.1.0` and a `runs` list)")
    return CheckReport(name, exit_code, log, every_result_blocks)


def _severity(result: Mapping[str, Any]) -> Severity:
    return Severity(result.get("properties", {}).get("severity", "low"))


def _open(result: Mapping[str, Any]) -> bool:
    return not result.get("suppressions")


def _blocking(report: CheckReport, fail_on: Severity) -> list[dict[str, Any]]:
    return [r for r in report.results
            if _open(r) and (report.every_result_blocks or _severity(r).rank >= fail_on.rank)]


def counts(reports: Sequence[CheckReport], fail_on: Severity) -> dict[str, int]:
    """Open findings by severity, the blocking ones, and the leaked credentials."""
    results = [r for report in reports for r in report.results if _open(r)]
    out = {str(s): sum(1 for r in results if _severity(r) == s) for s in SEVERITIES}
    out["findings"] = len(results)
    out["blocking"] = sum(len(_blocking(report, fail_on)) for report in reports)
    out["leaked-credentials"] = sum(len(report.results) for report in reports if report.every_result_blocks)
    return out


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _where(result: Mapping[str, Any]) -> str:
    location = (result.get("locations") or [{}])[0]
    physical = location.get("physicalLocation", {})
    uri = physical.get("artifactLocation", {}).get("uri", "?")
    line = physical.get("region", {}).get("startLine")
    return f"{uri}:{line}" if line else uri


def _status(report: CheckReport, fail_on: Severity) -> str:
    if report.exit_code is None:
        return "skipped (not configured)"
    if report.sarif is None:
        return f"error: no report (exit {report.exit_code}); the job log says why"
    open_results = [r for r in report.results if _open(r)]
    waived = len(report.results) - len(open_results)
    text = f"{len(open_results)} finding(s)" + (f", {waived} waived" if waived else "")
    if report.exit_code == 0:
        return f"passed: {text}"
    blocking = len(_blocking(report, fail_on))
    if report.exit_code == 1:
        return f"failed: {text}, {blocking} blocking"
    return f"error (exit {report.exit_code}): {text}; the job log says why"


def render_comment(reports: Sequence[CheckReport], fail_on: Severity, *, marker: bool = True) -> str:
    """Markdown for the PR comment (with the marker that finds it again) or the job summary (without)."""
    passed = not any(report.failed for report in reports)
    lines = [COMMENT_MARKER] if marker else []
    lines += [f"## Keyguard policy gate: {'passed' if passed else 'failed'}", "",
              f"Blocking: open findings at or above **{fail_on}**, and any credential added by the change.", "",
              "| check | result |", "|---|---|"]
    lines += [f"| {_cell(report.name)} | {_cell(_status(report, fail_on))} |" for report in reports]
    for report in reports:
        results = sorted(report.results, key=lambda r: (-_severity(r).rank, r.get("ruleId", ""), _where(r)))
        if not results:
            continue
        rules = report.rules
        lines += ["", f"### {_cell(report.name)}: {len(results)} finding(s)", "",
                  "| severity | rule | where | finding | remediation |", "|---|---|---|---|---|"]
        for result in results[:MAX_ROWS]:
            rule = rules.get(result.get("ruleId", ""), {})
            waived = " (waived)" if not _open(result) else ""
            lines.append(
                f"| {_severity(result)}{waived} | {_cell(result.get('ruleId', '?'))} | `{_cell(_where(result))}` "
                f"| {_cell(result.get('message', {}).get('text', ''))} "
                f"| {_cell(rule.get('help', {}).get('text', ''))} |")
        if len(results) > MAX_ROWS:
            lines.append(f"\n{len(results) - MAX_ROWS} more in code scanning and the SARIF report.")
    return "\n".join(lines) + "\n"


def verdict_lines(reports: Sequence[CheckReport], fail_on: Severity) -> list[str]:
    return [f"{report.name}: {_status(report, fail_on)}" for report in reports]
