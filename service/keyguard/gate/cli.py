"""`keyguard gate`: what the pull-request gate (action.yml) runs besides `policy check` and `infra check`:
the scan of a change's added lines for credentials, and the report that turns every check into one verdict,
one SARIF file, one PR comment and the job summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from keyguard.errors import ConfigError
from keyguard.gate.comment import CheckReport, counts, read_report, render_comment, verdict_lines
from keyguard.gate.credentials import LEAK_RULES, Leak, scan
from keyguard.gate.diff import added_lines, git_diff, read_diff_file
from keyguard.gate.locate import SourceLocation
from keyguard.gate.sarif import LocatedFinding, RuleText, merge_logs, sarif_log, write_sarif
from keyguard.policy.models import Finding, Severity
from keyguard.policy.report import (
    FormatOption,
    JsonOption,
    OutputOption,
    ReportFormat,
    findings_json,
    resolve_format,
    write_report,
)

app = typer.Typer(help="The pull-request gate: scan a diff for credentials, merge the checks' reports.",
                  no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def leak_finding(leak: Leak) -> Finding:
    """A leak in the Finding contract: the resource is its place, the evidence its kind; never its value."""
    rule = LEAK_RULES[leak.rule_id]
    where = f"{leak.path}:{leak.line}"
    return Finding(id=leak.rule_id, severity=Severity.critical, resource=where,
                   message=f"{leak.kind} added at {where}", remediation=rule.remediation,
                   evidence={"kind": leak.kind, "path": leak.path, "line": leak.line, "column": leak.column})


@app.command("scan-diff")
def scan_diff(
    base: Annotated[str | None, typer.Option(help="Base commit (the PR's base); scans base...head.")] = None,
    head: Annotated[str | None, typer.Option(help="Head commit (the PR's head).")] = None,
    diff: Annotated[Path | None, typer.Option(help="A unified diff file to scan instead; `-` reads stdin.")] = None,
    repo: Annotated[Path, typer.Option(help="The git repository (with --base/--head).")] = Path("."),
    as_json: JsonOption = False,
    fmt: FormatOption = None,
    output: OutputOption = None,
) -> None:
    """Fail (exit 1) when the change adds an exchange or AWS credential; prints file:line and kind, never the value.

    Only added lines count. Exit 0: clean; 1: credentials found; 2: bad input (a bad ref, an unreadable diff)."""
    fmt = resolve_format(fmt, as_json)
    if diff is not None and (base or head):
        raise ConfigError("give either --diff or --base and --head, not both")
    if diff is None and not (base and head):
        raise ConfigError("give --base and --head (commits to compare), or --diff FILE (`-` for stdin)")
    text = read_diff_file(None if str(diff) == "-" else diff) if diff is not None else \
        git_diff(base or "", head or "", repo)
    try:
        lines = list(added_lines(text))
    except ConfigError as exc:  # name the file it came from
        raise ConfigError(f"--diff {diff}: {exc}" if diff is not None else str(exc)) from None
    leaks = scan(lines)
    findings = [leak_finding(leak) for leak in leaks]
    if fmt is ReportFormat.sarif:
        rules = {rule.id: RuleText(rule.title, rule.remediation) for rule in LEAK_RULES.values()}
        located = [LocatedFinding(f, SourceLocation(Path(leak.path), leak.line, leak.column))
                   for f, leak in zip(findings, leaks, strict=True)]
        write_report(json.dumps(sarif_log(located, rules), indent=2), output, out)
    elif fmt is ReportFormat.json:
        write_report(findings_json(findings), output, out)
    if fmt is ReportFormat.table or output is not None:
        files = len({line.path for line in lines})
        out.print(f"scanned {len(lines)} added line(s) in {files} file(s)", highlight=False)
        for leak in leaks:
            # One plain line per leak (no table: a wrapped cell would split file:line in a CI log).
            out.print(f"{escape(leak.path)}:{leak.line}:{leak.column}: {leak.rule_id} {leak.kind}",
                      highlight=False, soft_wrap=True)
        if leaks:
            out.print(f"[bold red]{len(leaks)} credential(s) added[/]: revoke each at its issuer now, then remove "
                      "it from the branch history", highlight=False, soft_wrap=True)
        else:
            out.print("[green]no credentials[/] in the added lines", highlight=False)
    if leaks:
        raise typer.Exit(1)


@app.command()
def report(
    fail_on: Annotated[Severity, typer.Option(help="The gate's threshold (as given to the checks).")] = Severity.high,
    declared: Annotated[Path | None, typer.Option(help="SARIF of `keyguard policy check`.")] = None,
    declared_exit: Annotated[int | None, typer.Option(help="Its exit code (omit both when not run).")] = None,
    infra: Annotated[Path | None, typer.Option(help="SARIF of `keyguard infra check`.")] = None,
    infra_exit: Annotated[int | None, typer.Option(help="Its exit code.")] = None,
    secrets: Annotated[Path | None, typer.Option(help="SARIF of `keyguard gate scan-diff`.")] = None,
    secrets_exit: Annotated[int | None, typer.Option(help="Its exit code.")] = None,
    sarif: Annotated[Path, typer.Option(help="Where to write the merged SARIF (one run, for upload).")] = Path(
        "keyguard.sarif"),
    comment: Annotated[Path | None, typer.Option(help="Where to write the PR comment (markdown).")] = None,
    outputs: Annotated[Path | None, typer.Option(
        help="Append the counts as key=value lines here (the step's $GITHUB_OUTPUT).")] = None,
    summary: Annotated[Path | None, typer.Option(help="Append the report here ($GITHUB_STEP_SUMMARY).")] = None,
) -> None:
    """Merge the checks' SARIF into one file, write the PR comment and counts; exit 1 when any check failed."""
    for option, path, code in (("--declared", declared, declared_exit), ("--infra", infra, infra_exit),
                               ("--secrets", secrets, secrets_exit)):
        if (path is None) != (code is None):
            raise ConfigError(f"{option} and {option}-exit go together: give both for a check that ran, or neither")
    reports: list[CheckReport] = [
        read_report("Declared documents", declared, declared_exit),
        read_report("Pulumi program", infra, infra_exit),
        read_report("Credentials in the diff", secrets, secrets_exit, every_result_blocks=True),
    ]
    merged = merge_logs(r.sarif for r in reports if r.sarif is not None)
    try:
        write_sarif(merged, sarif)
    except OSError as exc:
        raise ConfigError(f"--sarif {sarif}: cannot write it ({exc.strerror or exc})") from None
    tally = counts(reports, fail_on)
    passed = not any(r.failed for r in reports)
    values = {"sarif-file": str(sarif), **{k: str(v) for k, v in tally.items()},
              "passed": "true" if passed else "false"}
    body = render_comment(reports, fail_on)
    for target, text in ((comment, body), (summary, render_comment(reports, fail_on, marker=False))):
        if target is not None:
            _write(target, text, append=target == summary)
    if comment is not None:
        values["comment-file"] = str(comment)
    if outputs is not None:
        _write(outputs, "".join(f"{k}={v}\n" for k, v in values.items()), append=True)
    for line in verdict_lines(reports, fail_on):
        out.print(escape(line), highlight=False, soft_wrap=True)
    out.print(f"SARIF: {escape(str(sarif))} ({tally['findings']} open finding(s), {tally['blocking']} blocking)",
              highlight=False, soft_wrap=True)
    if not passed:
        out.print("[bold red]the Keyguard gate failed[/]", highlight=False)
        raise typer.Exit(1)


def _write(path: Path, text: str, append: bool) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write it ({exc.strerror or exc})") from None
