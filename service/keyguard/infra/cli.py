"""`keyguard infra`: check the Pulumi program's resources against the infra rules before anything is deployed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field
from rich.console import Console

from keyguard.errors import ConfigError
from keyguard.infra.capture import capture_program, read_stack_config
from keyguard.loading import StrictModel, check_http_url, load_file, validate
from keyguard.policy.engine import evaluate_documents
from keyguard.policy.models import Finding, Severity
from keyguard.policy.report import (
    FailOnOption,
    FormatOption,
    JsonOption,
    OpaUrlOption,
    OutputOption,
    report_and_gate,
    resolve_format,
)
from keyguard.tools import PROJECT_ROOT

app = typer.Typer(help="Check the Pulumi program (under mocks) and the live stack against the infra rules.",
                  no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set keyguard:adminCidr=203.0.113.7/32")
        overrides[key] = value
    return overrides


class KeyBinding(StrictModel):
    key: str = Field(min_length=1, description="the exchange key's id (never its secret)")
    ips: list[str] = Field(description="the addresses the key is bound to at the exchange")


class KeyBindings(StrictModel):
    key_bindings: list[KeyBinding]


def load_key_bindings(path: Path) -> list[dict[str, Any]]:
    """A JSON/YAML list of {key, ips}: which IPs each exchange key is bound to (for the EIP migration check)."""
    loaded = load_file(path, "key bindings")
    data, lines = loaded.data, dict(loaded.lines)
    if isinstance(data, list):  # the bare list: name fields as if under `key_bindings:`
        data, lines = {"key_bindings": data}, {("key_bindings", *loc): line for loc, line in lines.items()}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a list of {{key: <key id>, ips: [<address>, ...]}} (or `key_bindings:`)")
    return [b.model_dump() for b in validate(KeyBindings, data, str(path), lines).key_bindings]


def evaluate_infra(document: dict[str, Any], opa_url: str | None, source: str) -> list[Finding]:
    return evaluate_documents([(source, document)], opa_url)


@app.command()
def check(
    program: Annotated[Path, typer.Option(help="Pulumi program directory (holds __main__.py).")] = PROJECT_ROOT
    / "infra",
    config: Annotated[Path, typer.Option(help="Stack config file, Pulumi.<stack>.yaml.")] = PROJECT_ROOT
    / "Pulumi.dev.yaml",
    project_file: Annotated[Path | None, typer.Option(help="Pulumi.yaml (default: beside --config).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a config value: KEY=VALUE.")] = None,
    key_bindings: Annotated[
        Path | None, typer.Option(help="JSON/YAML list of {key, ips}: check each key is bound to the EIP.")
    ] = None,
    fail_on: FailOnOption = Severity.high,
    as_json: JsonOption = False,
    fmt: FormatOption = None,
    output: OutputOption = None,
    opa_url: OpaUrlOption = None,
) -> None:
    """Run the program under Pulumi mocks, evaluate every resource it declares, exit 1 on a blocking finding."""
    fmt = resolve_format(fmt, as_json)  # a bad combination fails before any work
    stack_config = read_stack_config(config, project_file, parse_overrides(overrides or []))
    bindings = load_key_bindings(key_bindings) if key_bindings else None
    captured = capture_program(program, stack_config)
    document = captured.to_policy_input(bindings)
    findings = evaluate_infra(document, opa_url, source=f"{program} ({config.name})")

    def sarif() -> dict[str, Any]:
        from keyguard.gate.locate import locate_in_document, locate_in_program, program_sources
        from keyguard.gate.sarif import LocatedFinding, catalogue_texts, sarif_log
        # A key binding is about the --key-bindings file; a resource about the line of the program naming it.
        sources = program_sources(program)
        located = [LocatedFinding(f, locate_in_document(key_bindings, f.resource, f.evidence)
                                  if key_bindings and f.resource.startswith("key/")
                                  else locate_in_program(program, f.resource, sources)) for f in findings]
        return sarif_log(located, catalogue_texts())

    report_and_gate(findings, out, fail_on=fail_on, as_json=as_json, fmt=fmt, output=output, sarif=sarif,
                    title=f"infra {stack_config.stack}",
                    summary=f"{len(captured.resources)} resources captured from {program} under Pulumi mocks "
                    f"(stack {stack_config.project}/{stack_config.stack})")


@app.command()
def drift(
    outputs: Annotated[Path, typer.Option(help="Stack outputs JSON (`pulumi stack output --json > outputs.json`).")],
    region: Annotated[str, typer.Option(envvar="AWS_REGION", help="AWS region of the stack.")],
    endpoint_url: Annotated[
        str | None, typer.Option(envvar="KEYGUARD_AWS_ENDPOINT_URL", help="Alternative AWS endpoint.")
    ] = None,
    key_bindings: Annotated[
        Path | None, typer.Option(help="JSON/YAML list of {key, ips}: check each key is bound to the live EIP.")
    ] = None,
    fail_on: FailOnOption = Severity.high,
    as_json: JsonOption = False,
    opa_url: OpaUrlOption = None,
) -> None:
    """Read the deployed stack's live AWS resources and evaluate them with the same infra rules."""
    from keyguard.infra.drift import LiveAws, StackOutputs, collect_live_infra

    if endpoint_url is not None:
        check_http_url(endpoint_url, "--endpoint-url")
    stack_outputs = StackOutputs.from_file(outputs)
    bindings = load_key_bindings(key_bindings) if key_bindings else None
    document = collect_live_infra(stack_outputs, LiveAws(region=region, endpoint_url=endpoint_url), bindings)
    findings = evaluate_infra(document, opa_url, source=f"live AWS ({outputs.name})")
    report_and_gate(findings, out, fail_on=fail_on, as_json=as_json, title="infra drift",
                    summary=f"{len(document['resources'])} live resources read in {region}")
