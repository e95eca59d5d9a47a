package keyguard.execution.rate_budget_test

import rego.v1

import data.keyguard.execution.fixture_test as fixture
import data.keyguard.execution.rate_budget

results(doc) := found if {
	found := rate_budget.deny with input as doc
}

test_budget_at_the_headroom_is_quiet if {
	count(results(fixture.doc)) == 0
}

test_budget_above_headroom_is_high if {
	some finding in results(fixture.with_config({"rate_limit_budget_fraction": 0.95}))
	finding.id == "KG-EXE-107"
	finding.severity == "high"
	finding.evidence.rate_limit_budget_fraction == 0.95
}

test_missing_budget_is_high if {
	some finding in results(fixture.without_config(["rate_limit_budget_fraction"]))
	finding.id == "KG-EXE-107"
}
