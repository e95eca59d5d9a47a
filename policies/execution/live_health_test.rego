package keyguard.execution.live_health_test

import rego.v1

import data.keyguard.execution.fixture_test as fixture
import data.keyguard.execution.live_health

results(doc) := found if {
	found := live_health.deny with input as doc
}

ids(doc) := {finding.id | some finding in results(doc)}

engaged(trading_state, orders) := fixture.with_state({
	"kill_switch_engaged": true,
	"trading_state": trading_state,
	"orders_last_minute": orders,
})

test_healthy_worker_is_quiet if {
	count(results(fixture.doc)) == 0
}

test_config_only_check_has_no_live_findings if {
	count(results(fixture.with_doc({"state": null}))) == 0
}

test_orders_through_engaged_kill_switch_are_critical if {
	some finding in results(engaged("HALTED", 2))
	finding.id == "KG-EXE-206"
	finding.severity == "critical"
}

test_active_trading_state_under_engaged_kill_switch_is_critical if {
	"KG-EXE-206" in ids(engaged("ACTIVE", 0))
}

test_engaged_kill_switch_that_halted_the_worker_is_quiet if {
	count(results(engaged("HALTED", 0))) == 0
}

test_stale_heartbeat_is_high if {
	some finding in results(fixture.with_state({"heartbeat_at": "2026-11-24T23:58:00Z"}))
	finding.id == "KG-EXE-207"
	finding.severity == "high"
}

test_missing_heartbeat_is_high if {
	"KG-EXE-207" in ids(fixture.with_state({"heartbeat_at": null}))
}

test_heartbeat_from_the_future_is_not_fresh if {
	"KG-EXE-207" in ids(fixture.with_state({"heartbeat_at": "2026-11-26T00:00:00Z"}))
	not "KG-EXE-207" in ids(fixture.with_state({"heartbeat_at": "2026-11-25T00:00:30Z"}))
}
