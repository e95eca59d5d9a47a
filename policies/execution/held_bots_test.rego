package keyguard.execution.held_bots_test

import rego.v1

import data.keyguard.execution.fixture_test as fixture
import data.keyguard.execution.held_bots

results(doc) := found if {
	found := held_bots.deny with input as doc
}

with_bots(bots) := fixture.with_state({"bots": bots})

test_no_gateway_bots_is_quiet if {
	count(results(fixture.doc)) == 0
}

test_free_bots_are_quiet if {
	count(results(with_bots({"alpha": {"kill_switch_engaged": false, "refusals": {}}}))) == 0
}

test_held_bot_is_reported_with_its_reason if {
	some finding in results(with_bots({
		"alpha": {"kill_switch_engaged": false},
		"runner": {
			"kill_switch_engaged": true,
			"held_reason": "runaway: more than 20 refusals in a minute",
			"refusals": {"MAX_ORDER_NOTIONAL": 21},
		},
	}))
	finding.id == "KG-EXE-208"
	finding.resource == "worker-1/runner"
	contains(finding.message, "runaway")
}

test_bot_whose_switch_state_is_unknown_counts_as_held if {
	some finding in results(with_bots({"ghost": {"refusals": null}}))
	finding.resource == "worker-1/ghost"
}
