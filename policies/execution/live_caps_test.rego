package keyguard.execution.live_caps_test

import rego.v1

import data.keyguard.execution.fixture_test as fixture
import data.keyguard.execution.live_caps

results(doc) := found if {
	found := live_caps.deny with input as doc
}

ids(doc) := {finding.id | some finding in results(doc)}

test_live_state_within_caps_is_quiet if {
	count(results(fixture.doc)) == 0
}

test_config_only_check_has_no_live_findings if {
	count(results(fixture.with_doc({"state": null}))) == 0
}

test_orders_per_minute_above_cap_is_high if {
	some finding in results(fixture.with_state({"orders_last_minute": 31}))
	finding.id == "KG-EXE-201"
	finding.severity == "high"
	finding.evidence == {"orders_last_minute": 31, "max_orders_per_minute": 30}
}

test_order_above_max_notional_is_high if {
	some finding in results(fixture.with_state({"largest_order_notional_today": 1500.01}))
	finding.id == "KG-EXE-202"
	finding.severity == "high"
	not "KG-EXE-202" in ids(fixture.with_state({"largest_order_notional_today": 1500}))
}

test_short_position_beyond_cap_is_high if {
	some finding in results(fixture.with_state({"positions": {"BTC": 0.1, "ETH": -5.5}}))
	finding.id == "KG-EXE-203"
	finding.severity == "high"
	finding.resource == "worker-1/position/ETH"
	finding.message == "position -5.5 ETH exceeds its max position 5"
}

test_position_in_uncapped_asset_is_high if {
	some finding in results(fixture.with_state({"positions": {"DOGE": 1000, "SOL": 0}}))
	finding.id == "KG-EXE-203"
	finding.resource == "worker-1/position/DOGE"
	finding.message == "position 1000 DOGE has no max position configured"
	count(results(fixture.with_state({"positions": {"SOL": 0}}))) == 0
}

test_daily_loss_beyond_limit_is_high if {
	some finding in results(fixture.with_state({"daily_pnl": -2500, "trading_state": "HALTED"}))
	finding.id == "KG-EXE-204"
	finding.severity == "high"
	finding.message == "worker worker-1 lost 2500 today (limit 2000), trading state HALTED"
}

test_unknown_daily_pnl_is_a_finding_not_a_pass if {
	some finding in results(fixture.with_state({"daily_pnl": null, "trading_state": "ACTIVE"}))
	finding.id == "KG-EXE-204"
	startswith(finding.message, "worker worker-1: today's PnL is unknown (no price for an asset it moved today), ")
	endswith(finding.message, "so the daily loss limit 2000 is unchecked; trading state ACTIVE")
	not "KG-EXE-204" in ids(fixture.with_state({"daily_pnl": -1999}))
}

test_weight_usage_over_headroom_is_high if {
	some finding in results(fixture.with_state({"used_weight_1m": 5500}))
	finding.id == "KG-EXE-205"
	finding.severity == "high"
	not "KG-EXE-205" in ids(fixture.with_state({"used_weight_1m": 5400}))
}

test_weight_headroom_uses_declared_limit_when_state_has_none if {
	doc := fixture.with_state({"used_weight_1m": 5500, "weight_limit_1m": null})
	some finding in results(doc)
	finding.id == "KG-EXE-205"
	finding.evidence.weight_limit_1m == 6000
}

test_weight_used_against_an_unknown_limit_is_high if {
	doc := object.union(fixture.with_state({"weight_limit_1m": null}), {"exchange_limits": null})
	some finding in results(doc)
	finding.id == "KG-EXE-205"
	contains(finding.message, "against an unknown limit")
	not "KG-EXE-205" in ids(fixture.with_state({"weight_limit_1m": null}))
}
