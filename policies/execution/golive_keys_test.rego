package keyguard.execution.golive_keys_test

import rego.v1

import data.keyguard.execution.fixture_test as fixture
import data.keyguard.execution.golive_keys

results(doc) := found if {
	found := golive_keys.deny with input as doc
}

paper_with(permissions) := object.union(
	fixture.with_config({"stage": "paper"}),
	{"golive": {"key_permissions": permissions}},
)

test_trading_key_after_paper_is_quiet if {
	count(results(fixture.doc)) == 0
}

test_paper_stage_with_read_only_key_is_quiet if {
	count(results(paper_with({"read": true, "trade": false, "transfer": false, "withdraw": false}))) == 0
}

test_paper_stage_with_trading_key_is_high if {
	some finding in results(paper_with({"read": true, "trade": true, "transfer": false, "withdraw": false}))
	finding.id == "KG-LIVE-104"
	finding.severity == "high"
	finding.resource == "worker-1/golive/paper"
}

test_paper_stage_with_unknown_key_permissions_is_high if {
	count(results(paper_with({"read": true, "trade": null}))) == 1
	count(results(paper_with(null))) == 1
}
