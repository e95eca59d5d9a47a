package keyguard.execution.golive_sizing_test

import rego.v1

import data.keyguard.execution.fixture_test as fixture
import data.keyguard.execution.golive_sizing

results(doc) := found if {
	found := golive_sizing.deny with input as doc
}

test_full_live_is_not_bounded_by_the_ladder_caps if {
	count(results(fixture.doc)) == 0
}

test_micro_live_order_at_0_1_percent_is_quiet if {
	count(results(fixture.with_config({"stage": "micro-live", "max_order_notional": 100}))) == 0
}

test_micro_live_order_above_0_1_percent_is_high if {
	some finding in results(fixture.with_config({"stage": "micro-live", "max_order_notional": 150}))
	finding.id == "KG-LIVE-103"
	finding.severity == "high"
	finding.resource == "worker-1/golive/micro-live"
}

test_small_live_order_above_10_percent_is_high if {
	some finding in results(fixture.with_config({"stage": "small-live", "max_order_notional": 10001}))
	finding.id == "KG-LIVE-103"
	count(results(fixture.with_config({"stage": "small-live", "max_order_notional": 10000}))) == 0
}

test_micro_live_without_target_allocation_is_high if {
	count(results(fixture.with_config({"stage": "micro-live", "max_order_notional": 100, "target_allocation": null}))) == 1
}
