"""The infra examples stay truthful: the compliant one is exactly what the shipped program declares."""

from __future__ import annotations

import json

from keyguard.infra.capture import CapturedStack
from keyguard.infra.cli import load_key_bindings
from keyguard.policy import PolicyEngine
from keyguard.tools import PROJECT_ROOT

EXAMPLES = PROJECT_ROOT / "examples"


def test_example_input_is_the_shipped_program_as_captured(shipped: CapturedStack) -> None:
    assert json.loads((EXAMPLES / "infra-dev.json").read_text()) == json.loads(
        json.dumps(shipped.to_policy_input()))
    assert json.loads((EXAMPLES / "infra-dev-outputs.json").read_text()) == shipped.outputs


def test_example_input_passes_and_insecure_example_fails(infra_engine: PolicyEngine) -> None:
    assert infra_engine.evaluate(json.loads((EXAMPLES / "infra-dev.json").read_text())) == []
    insecure = infra_engine.evaluate(json.loads((EXAMPLES / "infra-insecure.json").read_text()))
    assert {f.id for f in insecure} == {"KG-INF-102", "KG-INF-103"}


def test_example_key_bindings_flag_only_the_key_on_a_retired_address(infra_engine: PolicyEngine) -> None:
    doc = json.loads((EXAMPLES / "infra-dev.json").read_text())
    doc["key_bindings"] = load_key_bindings(EXAMPLES / "infra-key-bindings.yaml")
    assert [(f.id, f.resource) for f in infra_engine.evaluate(doc)] == [("KG-INF-111", "key/bot-hedge-1")]
