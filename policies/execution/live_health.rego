# METADATA
# title: The execution worker is alive and obeys its kill switch
# description: A silent worker or one that trades through an engaged kill switch is out of control.
package keyguard.execution.live_health

import rego.v1

import data.keyguard.lib

# METADATA
# title: No orders flow while the kill switch is engaged
# custom:
#   id: KG-EXE-206
#   severity: critical
#   remediation: Revoke the worker's trading key at the exchange now, then find why the kill switch did not stop orders.
deny contains finding if {
	state.kill_switch_engaged == true
	flowing
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("kill switch of worker %s is engaged but trading state is %v with %v orders in the last minute", [
			worker,
			object.get(state, "trading_state", null),
			object.get(state, "orders_last_minute", null),
		]),
		{
			"kill_switch_engaged": true,
			"trading_state": object.get(state, "trading_state", null),
			"orders_last_minute": object.get(state, "orders_last_minute", null),
		},
	)
}

# METADATA
# title: The worker's heartbeat is fresh
# custom:
#   id: KG-EXE-207
#   severity: high
#   remediation: Check the worker process and its host; a worker that stops reporting may still hold open orders.
deny contains finding if {
	is_object(state)
	not heartbeat_fresh
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("heartbeat of worker %s is %v: missing, older than %d s or in the future", [
			worker, heartbeat_at,
			data.execution.live.heartbeat_max_age_s,
		]),
		{"heartbeat_at": heartbeat_at, "now": object.get(input, "now", null)},
	)
}

worker := object.get(input, "worker", "unknown-worker")

state := input.state if is_object(input.state)

heartbeat_at := object.get(state, "heartbeat_at", null)

# A heartbeat from the future (beyond a little clock skew) says nothing about whether the worker is alive now.
heartbeat_fresh if {
	age := lib.ns_since(heartbeat_at) / lib.ns_per_second
	age <= data.execution.live.heartbeat_max_age_s
	0 - age <= data.execution.live.heartbeat_max_ahead_s
}

flowing if state.orders_last_minute > 0

flowing if state.trading_state in data.execution.live.flowing_trading_states
