package keyguard.execution.fills_test

import rego.v1

import data.keyguard.execution.fills
import data.keyguard.execution.fixture_test as fixture

results(doc) := found if {
	found := fills.deny with input as doc
}

test_positive_min_fill_ratio_is_quiet if {
	count(results(fixture.doc)) == 0
}

test_missing_min_fill_ratio_is_medium if {
	some finding in results(fixture.with_config({"min_fill_ratio": null}))
	finding.id == "KG-EXE-112"
	finding.severity == "medium"
}

test_zero_or_above_one_min_fill_ratio_is_a_finding if {
	count(results(fixture.with_config({"min_fill_ratio": 0}))) == 1
	count(results(fixture.with_config({"min_fill_ratio": 1.5}))) == 1
}
