"""One policy bundle: built once by `opa build` with a revision, type-checked against the input schemas, shipped
inside the wheel, and the only source of the values Python shares with the rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers import UV

import keyguard
from keyguard.errors import PolicyError
from keyguard.exchanges.binance import binance_permissions
from keyguard.policy import bundle as bundles
from keyguard.policy import models
from keyguard.policy.catalogue import load_rules
from keyguard.policy.engine import PolicyEngine
from keyguard.tools import POLICY_DIR, PROJECT_ROOT, opa_binary
from keyguard.worker.risk import RiskLimits, Stage

EXAMPLES = PROJECT_ROOT / "examples"


@pytest.fixture
def policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the shipped policies that this process loads (KEYGUARD_POLICY_DIR), restored afterwards."""
    root = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, root)
    monkeypatch.setenv("KEYGUARD_POLICY_DIR", str(root))
    bundles.activate(bundles.resolve_bundle(root))
    yield root
    bundles.activate(bundles.resolve_bundle(POLICY_DIR))


def edit_data(root: Path, area: str, change: dict) -> None:
    path = root / area / "data.json"
    data = json.loads(path.read_text())
    for dotted, value in change.items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(json.dumps(data))


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name.lstrip("/"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_the_built_bundle_holds_rules_and_data_only_with_a_content_revision(tmp_path: Path) -> None:
    built = bundles.build_bundle(POLICY_DIR, tmp_path / "a.tar.gz")
    names = set(members(built.path))
    rule_files = {p.relative_to(POLICY_DIR).as_posix() for p in POLICY_DIR.rglob("*.rego")
                  if not p.name.endswith("_test.rego") and "pulumi" not in p.parts}
    assert names == rule_files | {"data.json", ".manifest"}
    manifest = json.loads(members(built.path)[".manifest"])
    assert manifest["revision"] == built.revision
    assert built.revision.startswith(f"{keyguard.__version__}+")
    again = bundles.build_bundle(POLICY_DIR, tmp_path / "b.tar.gz")
    assert again.revision == built.revision  # same policy, same revision

    copy = tmp_path / "changed"
    shutil.copytree(POLICY_DIR, copy)
    edit_data(copy, "keys", {"rotation.max_age_days": 60})
    assert bundles.build_bundle(copy, tmp_path / "c.tar.gz").revision != built.revision
    # A test file is not policy: changing one does not change the bundle.
    test_file = next(copy.rglob("*_test.rego"))
    test_file.write_text(test_file.read_text() + "\n# a comment\n")
    edit_data(copy, "keys", {"rotation.max_age_days": 90})
    assert bundles.build_bundle(copy, tmp_path / "d.tar.gz").revision == built.revision


@pytest.mark.parametrize(("module", "correct", "misspelt"), [
    ("keys/privilege.rego", "input.keys", "input.keyz"),
    ("execution/caps.rego", "input.portfolio_value", "input.portfolio_valu"),
    ("infra/common.rego", "input.resources", "input.resourcez"),
    ("vendors/withdraw.rego", "input.vendors", "input.vendorz"),
])
def test_a_rule_reading_a_misspelt_input_field_is_refused_with_file_and_line(
        tmp_path: Path, module: str, correct: str, misspelt: str) -> None:
    root = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, root)
    path = root / module
    source = path.read_text()
    assert correct in source
    path.write_text(source.replace(correct, misspelt, 1))
    line = source[:source.index(correct)].count("\n") + 1
    with pytest.raises(PolicyError) as err, PolicyEngine.managed(policy_root=root):
        pass
    assert f"{module}:{line}: rego_type_error" in str(err.value)
    assert misspelt in str(err.value)
    # The gate CI runs says the same.
    proc = subprocess.run([opa_binary(), "check", "--strict", "--schema", str(PROJECT_ROOT / "schemas"), str(root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and misspelt in proc.stdout + proc.stderr


def test_engine_catalogue_and_health_all_name_the_loaded_revision(policy_engine: PolicyEngine) -> None:
    loaded = policy_engine.bundle
    assert loaded is not None
    assert loaded.revision == bundles.resolve_bundle(POLICY_DIR).revision
    rules = load_rules(loaded)
    assert [r["id"] for r in rules] == [r["id"] for r in load_rules(POLICY_DIR)]
    assert all(r["path"].startswith("policies/") and not r["path"].endswith("_test.rego") for r in rules)


def test_severities_and_stages_in_python_are_the_bundles(policy_engine: PolicyEngine) -> None:
    data = bundles.resolve_bundle(POLICY_DIR).data
    assert [s.value for s in sorted(models.Severity, key=lambda s: s.rank)] == data["lib"]["severities"]
    assert [s.value for s in Stage] == data["execution"]["golive"]["ladder"]


def test_stage_caps_follow_the_bundle_data(policies: Path) -> None:
    limits = RiskLimits(target_allocation=10_000.0, stage=Stage.MICRO_LIVE)
    assert limits.stage_cap() == pytest.approx(10.0)  # 10 bps of the target, as the rules say
    edit_data(policies, "execution", {"golive.max_order_bps_of_target.micro-live": 50})
    bundles.activate(bundles.resolve_bundle(policies))
    assert limits.stage_cap() == pytest.approx(50.0)


def test_binance_permission_classes_follow_the_bundle_data(policies: Path) -> None:
    flags = {"enableReading": True, "enableSpotAndMarginTrading": True, "enableNewWalletMove": True}
    assert binance_permissions(flags).model_dump() == {
        "read": True, "trade": True, "transfer": False, "withdraw": False}
    # Binance adds a flag; the rules' map learns it, and the key inspection sees the same class.
    path = policies / "lib" / "data.json"
    data = json.loads(path.read_text())
    data["raw_permission_flags"]["binance"]["enableNewWalletMove"] = ["withdraw"]
    path.write_text(json.dumps(data))
    with PolicyEngine.managed(policy_root=policies) as engine:
        assert binance_permissions(flags).withdraw is True
        assert engine.bundle is not None and engine.bundle.revision != bundles.resolve_bundle(POLICY_DIR).revision


def test_a_corrupt_bundle_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bundle.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(PolicyError, match=r"bundle\.tar\.gz: not a readable OPA bundle"):
        bundles.resolve_bundle(bad)
    with pytest.raises(PolicyError, match="does not exist"):
        bundles.resolve_bundle(tmp_path / "missing")


@pytest.fixture
def bundle_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "keyguard" / "bundles"


def test_a_checked_build_is_reused_only_while_rules_data_and_schemas_are_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundle_cache: Path) -> None:
    root, schemas = tmp_path / "policies", tmp_path / "schemas"
    shutil.copytree(POLICY_DIR, root)
    shutil.copytree(PROJECT_ROOT / "schemas", schemas)
    monkeypatch.setenv("KEYGUARD_SCHEMA_DIR", str(schemas))
    first = bundles.resolve_bundle(root)
    again = bundles.resolve_bundle(root)
    assert again.revision == first.revision == bundles.resolve_bundle(POLICY_DIR).revision
    assert again.source == root and again.path != first.path and len(list(bundle_cache.glob("*.tar.gz"))) == 1

    # A cached build of this directory never stands in for a broken one: each is checked, with file and line.
    rule = root / "keys" / "privilege.rego"
    source = rule.read_text()
    rule.write_text(source.replace("input.keys", "input.keyz", 1))
    with pytest.raises(PolicyError, match=r"keys/privilege\.rego:\d+: rego_type_error"):
        bundles.resolve_bundle(root)
    rule.write_text(source)
    data = root / "keys" / "data.json"
    good_data = data.read_text()
    data.write_text(good_data.rstrip().removesuffix("}"))
    with pytest.raises(PolicyError, match=r"keys/data\.json:\d+:\d+: invalid JSON"):
        bundles.resolve_bundle(root)
    data.write_text(good_data)
    schema = json.loads((schemas / "keys.schema.json").read_text())
    schema["properties"]["keyz"] = schema["properties"].pop("keys")
    (schemas / "keys.schema.json").write_text(json.dumps(schema))
    with pytest.raises(PolicyError, match=r"rego_type_error: undefined ref: input\.keys"):
        bundles.resolve_bundle(root)


def test_an_unreadable_cache_entry_is_rebuilt(tmp_path: Path, bundle_cache: Path) -> None:
    root = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, root)
    revision = bundles.resolve_bundle(root).revision
    [entry] = bundle_cache.glob("*.tar.gz")
    entry.write_bytes(b"not a tarball")
    assert bundles.resolve_bundle(root).revision == revision
    assert bundles.load_bundle(entry).revision == revision


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory, built_wheel: Path) -> Path:
    """The wheel as a user installs it: built from this checkout, installed into a fresh venv."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([UV, "venv", "-q", "-p", sys.executable, str(venv)], check=True, timeout=120)
    subprocess.run([UV, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(built_wheel)],
                   check=True, timeout=600)
    return venv


def run_installed(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYGUARD_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(KEYGUARD_OPA_BIN=opa_binary(), HOME=str(cwd), PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    return subprocess.run([str(venv / "bin" / "keyguard"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_installed_wheel_evaluates_policies_with_no_checkout(installed: Path, tmp_path: Path) -> None:
    document = tmp_path / "keys.yaml"
    shutil.copy(EXAMPLES / "keys-insecure.yaml", document)
    code = ("import keyguard.tools as t, keyguard.policy.bundle as b; "
            "print(t.PROJECT_ROOT, b.default_source(), b.resolve_bundle().revision)")
    where = subprocess.run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert where.returncode == 0, where.stderr
    project_root, source, revision = where.stdout.split()
    assert not Path(project_root, "policies").exists() and str(PROJECT_ROOT) not in source
    assert source.endswith("keyguard/bundle/keyguard-policies.tar.gz")
    assert revision == bundles.resolve_bundle(POLICY_DIR).revision  # the wheel carries this checkout's bundle

    checked = run_installed(installed, tmp_path, "policy", "check", str(document), "--json")
    assert checked.returncode == 1, checked.stderr
    expected = subprocess.run([sys.executable, "-m", "keyguard.cli", "policy", "check", str(document), "--json"],
                              capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    found = {(f["id"], f["resource"]) for f in json.loads(checked.stdout)}
    assert found and found == {(f["id"], f["resource"]) for f in json.loads(expected.stdout)}

    listed = run_installed(installed, tmp_path, "policy", "rules", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [r["id"] for r in load_rules(POLICY_DIR)]

    exported = run_installed(installed, tmp_path, "policy", "bundle", "-o", str(tmp_path / "out.tar.gz"))
    assert exported.returncode == 0, exported.stderr
    assert json.loads(members(tmp_path / "out.tar.gz")[".manifest"])["revision"] == revision


def test_worker_retry_bounds_and_headroom_follow_the_bundle_data(policies: Path) -> None:
    from pydantic import ValidationError

    from keyguard.worker.config import WorkerConfig

    with pytest.raises(ValidationError, match=r"between 3 and 5 \(the policy's execution.retries bounds\)"):
        WorkerConfig.model_validate({"data_retry": {"attempts": 7}})
    assert WorkerConfig().limiter.headroom == 0.9
    edit_data(policies, "execution", {"retries.data_max_attempts": 8, "rate_limit.headroom_fraction": 0.8})
    bundles.activate(bundles.resolve_bundle(policies))
    assert WorkerConfig.model_validate({"data_retry": {"attempts": 7}}).data_retry.attempts == 7
    assert WorkerConfig().limiter.headroom == 0.8


def test_the_crossguard_pack_runs_the_exported_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a Keyguard install the pack takes the file `keyguard policy bundle -o` wrote, and judges with it."""
    import importlib

    sys.path.insert(0, str(POLICY_DIR / "pulumi"))
    pack = importlib.import_module("keyguard_crossguard")
    exported = bundles.export_bundle(bundles.resolve_bundle(POLICY_DIR), tmp_path / "keyguard-policies.tar.gz")
    monkeypatch.setenv("KEYGUARD_POLICY_BUNDLE", str(exported))
    monkeypatch.setenv("KEYGUARD_OPA_BIN", opa_binary())
    assert pack.policy_bundle() == exported
    sidecar = pack.OpaSidecar()
    sidecar.start()
    try:
        group = pack.StackResource("aws:ec2/securityGroup:SecurityGroup", "open", "urn:open", {
            "ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]})
        findings = pack.evaluate(pack.stack_input([group]), sidecar.url)
    finally:
        sidecar.stop()
    assert any(f["resource"] == "SecurityGroup/open" and f["severity"] == "critical" for f in findings), findings
    monkeypatch.setenv("KEYGUARD_POLICY_BUNDLE", str(tmp_path / "missing.tar.gz"))
    with pytest.raises(pack.PackError, match="does not exist"):
        pack.policy_bundle()
