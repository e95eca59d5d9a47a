"""`keyguard gate scan-diff`: credentials in added lines fail with file:line and kind and never their value;
removed and context lines, placeholders and look-alikes pass; bad input exits 2 with a message naming it."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from keyguard.cli import main
from keyguard.errors import ConfigError
from keyguard.gate.credentials import scan
from keyguard.gate.diff import added_lines

from .conftest import (
    ALNUM,
    BASE64,
    HEX,
    assert_valid_sarif,
    aws_access_key,
    binance_secret,
    canary,
    commit_files,
    user_repo,
    uuid_shaped,
)


def keyguard(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str,
             stdin: bytes | None = None) -> tuple[int, str, str]:
    """The real entry point in-process (its error handling included): exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["keyguard", *args])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0 if code is None else 1), captured.out, captured.err


def diff_adding(path: str, *lines: str) -> str:
    body = "".join(f"+{line}\n" for line in lines)
    return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n{body}"


def leaks_in(path: str, *lines: str) -> list[tuple[str, int, str, str]]:
    return [(leak.path, leak.line, leak.rule_id, leak.kind) for leak in scan(added_lines(diff_adding(path, *lines)))]


def test_every_credential_kind_is_found_at_its_file_and_line() -> None:
    pem_header = "-----BEGIN EC " + "PRIVATE KEY-----"
    cases = [
        ("deploy/.env", f"AWS_ACCESS_KEY_ID={aws_access_key()}", "KG-LEAK-101", "AWS access key id"),
        ("deploy/.env", f"aws_secret_access_key = {canary(BASE64, 40, 'Kg7/')}", "KG-LEAK-102",
         "AWS secret access key"),
        ("bot/.env", f"BINANCE_API_SECRET={binance_secret()}", "KG-LEAK-103", "Binance API key or secret"),
        ("bot/okx.yaml", f"okx_api_key: {uuid_shaped()}", "KG-LEAK-104", "OKX API key"),
        ("bot/okx.yaml", f'OKX_SECRET_KEY="{canary(HEX, 32, "7f").upper()}"', "KG-LEAK-104", "OKX API secret"),
        ("bot/bybit.py", f"api_key = '{canary(ALNUM.upper(), 18, 'KG7')}'  # bybit", "KG-LEAK-105", "Bybit API key"),
        ("bot/bybit.py", f"BYBIT_API_SECRET = '{canary(ALNUM, 36, 'Kg7q')}'", "KG-LEAK-105", "Bybit API secret"),
        ("bot/kraken.toml", f'kraken_api_key = "{canary(BASE64, 56, "Kg7/")}"', "KG-LEAK-106", "Kraken API key"),
        ("bot/kraken.toml", f'private_key = "{canary(BASE64, 86, "Kg7+")}=="  # kraken', "KG-LEAK-106",
         "Kraken private key"),
        ("cdp.json", f'"name": "organizations/{uuid_shaped()}/apiKeys/{uuid_shaped()}",', "KG-LEAK-107",
         "Coinbase CDP API key name"),
        ("coinbase.env", f"COINBASE_API_SECRET={canary(BASE64, 86, 'Kg7+')}==", "KG-LEAK-107",
         "Coinbase API secret"),
        ("keys/ed25519.pem", pem_header, "KG-LEAK-108", "private key block (PEM)"),
        ("settings.json", f'"apiSecret": "{binance_secret()}"', "KG-LEAK-103",
         "exchange API key or secret (Binance shape)"),
    ]
    for path, line, rule, kind in cases:
        assert leaks_in(path, "# unrelated first line", line) == [(path, 2, rule, kind)], line


@pytest.mark.parametrize("line", [
    "commit: 3f786850e387550fdab836ed7e6dc881de23001b",
    "sha256: " + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "image: ghcr.io/acme/bot@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    'request_id = "123e4567-e89b-12d3-a456-426614174000"',
    "idempotency_key: 7f3c2a10-4b6d-4e8f-9a1b-2c3d4e5f6a7b",
    "api_key: ${{ secrets.BINANCE_API_KEY }}",
    "BINANCE_API_SECRET=${BINANCE_API_SECRET}",
    "secret: <your-binance-api-secret-goes-here>",
    "aws_access_key_id = AKIA" + "IOSFODNN7EXAMPLE",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    "integrity: sha512-" + canary(BASE64, 86, "Kg7+") + "==",
    "api_key_id: bot-exec-1",
    "kms_key_id: arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "public_key: " + canary(ALNUM, 64, "Kg7q"),
    "cache_key: " + canary(ALNUM, 64, "Kg7q"),
    'secret = os.environ["BINANCE_API_SECRET"]',
    'api_secret = vault.read("binance/api-secret")',
    "secret_name: keyguard/dev/bot-exec-1",
    "binance_api_key: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "api_secret: " + "a" * 64,
    '"targetKeyId": "2ef70977-d520-9d0e-416a-b8a283c11850",',
    'fields({"userData": "-----BEGIN OPENSSH ' + 'PRIVATE KEY-----\\nEXAMPLE\\n"})',
])
def test_look_alikes_and_placeholders_are_not_credentials(line: str) -> None:
    assert leaks_in("config/app.yaml", line) == []


def test_removed_and_context_lines_do_not_count_only_added_ones() -> None:
    secret = binance_secret()
    diff = (
        "diff --git a/bot/.env b/bot/.env\n--- a/bot/.env\n+++ b/bot/.env\n"
        "@@ -1,3 +1,3 @@\n"
        f" BINANCE_API_KEY={secret}\n"
        f"-BINANCE_API_SECRET={secret}\n"
        "+BINANCE_API_SECRET=${BINANCE_API_SECRET}\n"
        " LOG_LEVEL=info\n"
    )
    assert list(added_lines(diff))[0].line == 2
    assert scan(added_lines(diff)) == []


def test_line_numbers_follow_the_hunks_of_a_real_git_diff(tmp_path: Path) -> None:
    repo, base = user_repo(tmp_path)
    original = [f"line {n}" for n in range(1, 51)]
    base = commit_files(repo, {"bot/strategy.py": "\n".join(original) + "\n"}, "strategy")
    changed = original[:]
    changed[4] = "line 5, edited"
    changed.insert(41, f"AWS_KEY = '{aws_access_key()}'")  # becomes line 42
    changed.insert(20, "++note: a line that starts with two pluses")  # a `+++` line inside a hunk is content
    # A non-ASCII name, which git quotes with octal escapes in the diff header.
    head = commit_files(repo, {"bot/strategy.py": "\n".join(changed) + "\n",
                               "bot/ünïcode.env": f"BINANCE_API_SECRET={binance_secret()}\n"})
    from keyguard.gate.diff import git_diff

    found = [(leak.path, leak.line, leak.rule_id) for leak in scan(added_lines(git_diff(base, head, repo)))]
    assert found == [("bot/strategy.py", 43, "KG-LEAK-101"), ("bot/ünïcode.env", 1, "KG-LEAK-103")]


def test_planted_credentials_fail_the_scan_with_file_line_and_kind_and_never_the_value(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    repo, base = user_repo(tmp_path)
    aws_key, exchange_secret = aws_access_key(), binance_secret()
    head = commit_files(repo, {"bot/settings.py": f'"""Settings."""\nREGION = "eu-central-1"\nKEY = "{aws_key}"\n',
                               "bot/exchange.yaml": f"exchange: binance\napi_secret: {exchange_secret}\n"})
    sarif = tmp_path / "secrets.sarif"
    code, out, err = keyguard(monkeypatch, capsys, "gate", "scan-diff", "--repo", str(repo), "--base", base,
                              "--head", head, "--format", "sarif", "--output", str(sarif))
    assert code == 1
    assert "bot/settings.py:3:" in out and "AWS access key id" in out
    assert "bot/exchange.yaml:2:" in out and "Binance API key or secret" in out
    log = json.loads(sarif.read_text())
    assert_valid_sarif(log)
    places = {(r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
               r["locations"][0]["physicalLocation"]["region"]["startLine"]) for r in log["runs"][0]["results"]}
    assert places == {("KG-LEAK-101", "bot/settings.py", 3), ("KG-LEAK-103", "bot/exchange.yaml", 2)}
    assert {r["level"] for r in log["runs"][0]["results"]} == {"error"}
    for value in (aws_key, exchange_secret):
        assert value not in out + err + sarif.read_text()
    # The JSON report (the machine format of the same command) carries no value either.
    code, out, err = keyguard(monkeypatch, capsys, "gate", "scan-diff", "--repo", str(repo), "--base", base,
                              "--head", head, "--format", "json")
    assert code == 1 and {f["id"] for f in json.loads(out)} == {"KG-LEAK-101", "KG-LEAK-103"}
    assert aws_key not in out + err and exchange_secret not in out + err


def test_a_clean_change_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    repo, base = user_repo(tmp_path)
    head = commit_files(repo, {"README.md": "# spot bot\nKeys live in AWS Secrets Manager.\n"})
    code, out, _ = keyguard(monkeypatch, capsys, "gate", "scan-diff", "--repo", str(repo), "--base", base,
                            "--head", head)
    assert code == 0
    assert "scanned 2 added line(s) in 1 file(s)" in out and "no credentials" in out


def test_a_bad_ref_exits_2_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    repo, base = user_repo(tmp_path)
    code, _, err = keyguard(monkeypatch, capsys, "gate", "scan-diff", "--repo", str(repo), "--base", base,
                            "--head", "no-such-branch")
    assert code == 2
    assert "--head no-such-branch: not a commit" in err and "fetch-depth: 0" in err
    assert "Traceback" not in err


def test_an_unreadable_or_malformed_diff_exits_2_without_echoing_its_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = keyguard(monkeypatch, capsys, "gate", "scan-diff", "--diff", str(tmp_path / "missing.diff"))
    assert code == 2 and f"--diff {tmp_path / 'missing.diff'}: file not found" in err

    secret = binance_secret()
    truncated = diff_adding("bot/.env", "LOG=1", f"BINANCE_API_SECRET={secret}").replace("+1,2 @@", "+1,5 @@")
    code, out, err = keyguard(monkeypatch, capsys, "gate", "scan-diff", "--diff", "-", stdin=truncated.encode())
    assert code == 2
    assert "the diff ends inside a hunk" in err
    assert secret not in out + err

    code, _, err = keyguard(monkeypatch, capsys, "gate", "scan-diff", "--diff", "-",
                            stdin=f"API_SECRET={secret}\n".encode())
    assert code == 2 and "not a unified diff" in err and secret not in err


def test_a_malformed_hunk_line_is_named_by_its_diff_line_number_only() -> None:
    secret = binance_secret()
    diff = diff_adding("bot/.env", "LOG=1", "LEVEL=2").replace("+LEVEL=2", f"?BINANCE_API_SECRET={secret}")
    with pytest.raises(ConfigError) as error:
        list(added_lines(diff))
    assert "diff line 6" in str(error.value) and secret not in str(error.value)


def test_both_sources_or_neither_is_bad_input(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = keyguard(monkeypatch, capsys, "gate", "scan-diff", "--diff", "x.diff", "--base", "main")
    assert code == 2 and "either --diff or --base and --head" in err
    code, _, err = keyguard(monkeypatch, capsys, "gate", "scan-diff", "--base", "main")
    assert code == 2 and "give --base and --head" in err
    assert "Traceback" not in err
