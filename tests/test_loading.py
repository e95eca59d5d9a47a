"""The one loader every file-taking command uses: each class of hostile input is refused as bad input (exit 2),
naming the file, line and field, and never quoting the value it refuses."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from keyguard.config import load_settings
from keyguard.errors import ConfigError
from keyguard.exchanges.inventory import load_inventory
from keyguard.gateway.config import load_gateway_config
from keyguard.infra.cli import load_key_bindings
from keyguard.infra.drift import StackOutputs
from keyguard.loading import bad_input, load_mapping
from keyguard.policy.documents import load_document
from keyguard.redact import redact_text
from keyguard.worker.config import load_worker_config

CANARY = "Kg-canary-5e1d0c/SECRET+="  # looks like a secret, not like an environment variable's name
BINANCE_LIKE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"


def refusal(load: object, path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        load(path)  # type: ignore[operator]
    message = str(raised.value)
    assert raised.value.exit_code == 2
    assert CANARY not in message and BINANCE_LIKE_KEY not in message
    return message


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize(
    "load",
    [load_worker_config, load_settings, load_inventory, StackOutputs.from_file, load_key_bindings, load_document],
)
def test_a_directory_a_binary_file_and_bad_json_are_refused_naming_the_file(tmp_path: Path, load: object) -> None:
    assert "is a directory" in refusal(load, tmp_path)
    binary = write(tmp_path, "bin.yaml", b"\x7fELF\x00\x01\xff\xfe")
    assert f"{binary}: a binary file" in refusal(load, binary)
    latin = write(tmp_path, "latin.yaml", "name: caf\xe9\n".encode("latin-1"))
    assert f"{latin}: not UTF-8 text" in refusal(load, latin)
    bad_json = write(tmp_path, "bad.json", '{"a": 1,\n "b": }')
    assert f"{bad_json}:2:7: invalid JSON" in refusal(load, bad_json)
    assert "file is empty" in refusal(load, write(tmp_path, "empty.yaml", ""))


def test_invalid_yaml_names_line_and_column_but_never_quotes_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "worker.yaml", f"exchange:\n  api_key_env: [{CANARY}\n  secret: : {CANARY}\n")
    message = refusal(load_worker_config, path)
    assert message.startswith(f"{path}:3:") and "invalid YAML" in message


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        (
            "keys.yaml",
            "kind: keys\nkeys:\n  - id: k\n    permissions: {withdraw: true}\n    permissions: {read: true}\n",
            5,
        ),
        ("keys.json", '{"kind": "keys",\n "kind": "vendors"}', 2),
    ],
)
def test_a_duplicate_key_is_refused_with_file_line_and_key(tmp_path: Path, name: str, text: str, line: int) -> None:
    path = write(tmp_path, name, text)
    message = refusal(load_document, path)
    assert message.startswith(f"{path}:{line}: duplicate key")
    assert "'permissions'" in message or "'kind'" in message


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("worker.yaml", "risk:\n  max_order_notional: .nan\n", ":2: field risk.max_order_notional"),
        ("worker.yaml", "risk:\n  daily_loss_limit: -.inf\n", ":2: field risk.daily_loss_limit"),
        ("worker.json", '{"risk": {"max_order_notional": NaN}}', ": field risk.max_order_notional"),
        ("worker.json", '{"risk": {"max_position": {"BTC": 1e999}}}', ": field risk.max_position.BTC"),
    ],
)
def test_non_finite_numbers_are_refused_with_file_and_field(tmp_path: Path, name: str, text: str, where: str) -> None:
    path = write(tmp_path, name, text)
    message = refusal(load_worker_config, path)
    assert f"{path}{where}: not a finite number" in message


@pytest.mark.parametrize(
    "text",
    [
        "kind: keys\nnow: 2026-02-30T00:00:00Z\n",
        "kind: keys\nnow: '2026-02-30T00:00:00Z'\n",
        "kind: keys\nkeys:\n  - created_at: 2026-13-01\n",
    ],
)
def test_dates_that_do_not_exist_are_refused_as_bad_input_with_the_field(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "keys.yaml", text)
    message = refusal(load_document, path)
    assert "not a real date" in message and ("field now" in message or "field keys[0].created_at" in message)


def test_a_real_date_still_loads(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, "keys.yaml", "kind: keys\nnow: 2028-02-29T00:00:00Z\n"))
    assert doc["now"] == "2028-02-29T00:00:00Z"


@pytest.mark.parametrize(
    ("load", "text", "field"),
    [
        (load_settings, "checks:\n  intervall_s: 5\n", "checks.intervall_s"),
        (load_settings, "service:\n  portt: 8700\n", "service.portt"),
        (load_worker_config, "risk:\n  max_orders_per_minit: 5\n", "risk.max_orders_per_minit"),
        (
            load_inventory,
            "keys:\n  - id: k\n    exchange: binance\n    credentials: {api_key_env: A, secret_env: B}\n"
            "    permissions: {withdrw: false}\n",
            "keys[0].permissions.withdrw",
        ),
    ],
)
def test_a_misspelt_nested_setting_is_refused_with_its_dotted_path(
    tmp_path: Path, load: object, text: str, field: str
) -> None:
    message = refusal(load, write(tmp_path, "settings.yaml", text))
    assert f"field {field}: unknown field; expected one of:" in message


@pytest.mark.parametrize(
    "text",
    ["risk:\n  max_orders_per_minute: -30\n", "risk:\n  max_order_notional: 0\n", "risk:\n  max_position: {BTC: -1}\n"],
)
def test_negative_or_zero_caps_are_refused(tmp_path: Path, text: str) -> None:
    message = refusal(load_worker_config, write(tmp_path, "worker.yaml", text))
    assert ":2: field risk." in message and "greater than" in message


def test_a_gateway_s_cash_assets_are_read_as_the_exchange_names_them_and_an_empty_name_is_refused(
        tmp_path: Path) -> None:
    loaded = load_gateway_config(write(tmp_path, "gateway.yaml", "quote_assets: [usdt, ' Fdusd ']\n"))
    assert loaded.quote_assets == ["USDT", "FDUSD"]
    for text in ("quote_assets: []\n", "quote_assets: [USDT, '']\n", "quote_assets: USDT\n"):
        assert "gateway.yaml:1: field quote_assets: " in refusal(load_gateway_config,
                                                                 write(tmp_path, "gateway.yaml", text))


@pytest.mark.parametrize(
    ("load", "text"),
    [
        (load_settings, "service:\n  api_token_env: '{secret}'\n"),
        (load_worker_config, "exchange:\n  api_key_env: '{secret}'\n"),
        (load_worker_config, "exchange:\n  api_secret_env: '{secret}'\n"),
        (
            load_inventory,
            "keys:\n  - id: k\n    exchange: binance\n    credentials: {{api_key_env: A, secret_env: '{secret}'}}\n",
        ),
    ],
)
@pytest.mark.parametrize("secret", [CANARY, BINANCE_LIKE_KEY])
def test_a_token_where_an_env_var_name_belongs_is_refused_without_echo(
    tmp_path: Path, load: object, text: str, secret: str
) -> None:
    message = refusal(load, write(tmp_path, "settings.yaml", text.format(secret=secret)))
    assert "NAME of an environment variable" in message or "looks like a key or token" in message


def test_keys_inspect_refuses_a_token_in_an_env_flag_and_a_zero_timeout() -> None:
    from keyguard.exchanges.cli import app

    runner = CliRunner()
    result = runner.invoke(
        app, ["inspect", "--exchange", "binance", "--key-id", "k", "--api-key-env", CANARY, "--secret-env", "B"]
    )
    assert isinstance(result.exception, ConfigError) and "--api-key-env" in str(result.exception)
    assert CANARY not in str(result.exception) + result.output
    result = runner.invoke(
        app,
        [
            "inspect",
            "--exchange",
            "binance",
            "--key-id",
            "k",
            "--api-key-env",
            "A",
            "--secret-env",
            "B",
            "--timeout-ms",
            "0",
        ],
    )
    assert result.exit_code == 2 and "--timeout-ms" in result.output


@pytest.mark.parametrize(
    ("load", "text"),
    [
        (load_settings, "store:\n  url: 'mysqlx://keyguard:{secret}@db/keyguard'\n"),
        (load_settings, "alerts:\n  routes:\n    - url: 'keyguard:{secret}@hooks.example.com/alerts'\n"),
        (load_worker_config, "journal_url: 'nosuch://u:{secret}@db/j'\n"),
        (load_worker_config, "stage: sandbox\nexchange:\n  base_url: 'https://u:{secret}@api.binance.com'\n"),
    ],
)
def test_a_url_with_a_password_is_never_quoted_back(tmp_path: Path, load: object, text: str) -> None:
    message = refusal(load, write(tmp_path, "settings.yaml", text.format(secret=CANARY)))
    assert "url" in message


def test_redaction_removes_the_password_of_any_url() -> None:
    text = redact_text(f"cannot reach postgresql://keyguard:{CANARY}@db:5432/k nor mailto://me:{CANARY}@example.com")
    assert CANARY not in text and "postgresql://keyguard:***@db:5432/k" in text


def test_an_apprise_url_apprise_refuses_is_not_quoted_or_logged(caplog: pytest.LogCaptureFixture) -> None:
    from keyguard.alerts import AlertRoute, Notifier

    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError, match=r"alerts.routes\[0\].url is not a URL apprise understands") as raised:
        Notifier([AlertRoute(url=f"tgram://{CANARY}")])
    assert CANARY not in str(raised.value) and CANARY not in caplog.text


def test_validation_messages_never_show_the_value_a_validator_quoted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inventory.yaml",
        f"keys:\n  - id: k\n    exchange: binance\n    credentials: {{}}\nexchange_urls: {{binance: '{CANARY}'}}\n",
    )
    message = refusal(load_inventory, path)
    assert f"{path}:4: field keys[0].credentials" in message and f"{path}:5: field exchange_urls.binance" in message


def test_an_unexpected_exception_reaching_the_cli_is_one_line_exit_2_without_its_message() -> None:
    try:
        raise ValueError(f"could not use {CANARY}")
    except ValueError as exc:
        message, code = bad_input(exc)
    assert code == 2 and CANARY not in message and "\n" not in message
    assert message.startswith("unexpected ValueError") and "KEYGUARD_DEBUG=1" in message


def test_aliases_and_merge_keys_still_load(tmp_path: Path) -> None:
    path = write(tmp_path, "doc.yaml", "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert load_mapping(path).data == {"base": {"x": 1}, "other": {"x": 1, "y": 2}}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)),
            "expands to more than",
        ),
        ("kind: keys\nhosts: &h [*h]\n", "contains itself"),
    ],
)
def test_aliases_that_expand_without_end_are_refused_before_validation(tmp_path: Path, text: str, problem: str) -> None:
    assert problem in refusal(load_document, write(tmp_path, "keys.yaml", text))


def _models(root: type, seen: set[type] | None = None) -> set[type]:
    import typing

    from pydantic import BaseModel

    seen = set() if seen is None else seen
    stack: list[object] = [root]
    while stack:
        annotation = stack.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                continue
            seen.add(annotation)
            stack.extend(info.annotation for info in annotation.model_fields.values())
        else:
            stack.extend(typing.get_args(annotation))
    return seen


def test_every_setting_that_names_an_environment_variable_refuses_a_token_there() -> None:
    from keyguard.config import KeyguardSettings
    from keyguard.exchanges.inventory import Inventory
    from keyguard.gateway.config import GatewayConfig
    from keyguard.worker.config import WorkerConfig

    fields = [
        (model, name)
        for root in (KeyguardSettings, WorkerConfig, GatewayConfig, Inventory)
        for model in _models(root)
        for name in model.model_fields
        if name.endswith("_env")
    ]
    assert len(fields) >= 6  # api_token_env, the worker's two, the inventory's three
    for model, name in fields:
        try:
            model.model_validate({name: CANARY})
        except ValidationError as exc:
            errors = exc.errors()
        else:
            errors = []
        assert any(e["loc"] == (name,) and "environment variable" in e["msg"] for e in errors), (model, name)
