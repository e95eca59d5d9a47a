package keyguard.execution.caps_test

import rego.v1

import data.keyguard.execution.caps
import data.keyguard.execution.fixture_test as fixture

results(doc) := found if {
	found := caps.deny with input as doc
}

ids(doc) := {finding.id | some finding in results(doc)}

test_caps_within_limits_are_quiet if {
	count(results(fixture.doc)) == 0
}

test_order_notional_above_2_percent_is_high if {
	some finding in results(fixture.with_config({"max_order_notional": 2500}))
	finding.id == "KG-EXE-101"
	finding.severity == "high"
	finding.resource == "worker-1"
	finding.message == "max order notional is 2500, above the limit (limit 2000: 200 bps of portfolio 100000)"
}

test_order_notional_exactly_2_percent_is_quiet if {
	not "KG-EXE-101" in ids(fixture.with_config({"max_order_notional": 2000}))
}

test_missing_order_notional_or_portfolio_is_high if {
	"KG-EXE-101" in ids(fixture.without_config(["max_order_notional"]))
	"KG-EXE-101" in ids(fixture.with_doc({"portfolio_value": null}))
}

test_no_orders_per_minute_cap_is_high if {
	some finding in results(fixture.with_config({"max_orders_per_minute": null}))
	finding.id == "KG-EXE-102"
	finding.severity == "high"
	"KG-EXE-102" in ids(fixture.with_config({"max_orders_per_minute": 0}))
}

test_no_max_position_is_high if {
	some finding in results(fixture.with_config({"max_position": {}}))
	finding.id == "KG-EXE-103"
	finding.severity == "high"
	finding.resource == "worker-1"
	"KG-EXE-103" in ids(fixture.without_config(["max_position"]))
}

test_asset_with_unset_position_cap_is_high if {
	some finding in results(fixture.with_config({"max_position": {"BTC": 0.5, "SOL": null}}))
	finding.id == "KG-EXE-103"
	finding.resource == "worker-1/position/SOL"
}

test_daily_loss_limit_above_5_percent_is_high if {
	some finding in results(fixture.with_config({"daily_loss_limit": 6000}))
	finding.id == "KG-EXE-104"
	finding.severity == "high"
}

test_missing_daily_loss_limit_is_high if {
	some finding in results(fixture.with_config({"daily_loss_limit": null}))
	finding.id == "KG-EXE-104"
	finding.message == "daily loss limit is not a positive cap (null) (limit 5000: 500 bps of portfolio 100000)"
}
