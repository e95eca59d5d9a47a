# METADATA
# title: The execution worker's live state stays inside its configured caps
# description: >-
#   The same caps as the config rules, checked against what the worker is doing now; a breach means
#   the worker's own pre-trade checks failed or were bypassed.
package keyguard.execution.live_caps

import rego.v1

import data.keyguard.lib

# METADATA
# title: Orders in the last minute are within the configured cap
# custom:
#   id: KG-EXE-201
#   severity: high
#   remediation: >-
#     Halt the worker and find why its order-rate limiter let more orders through than
#     config.max_orders_per_minute.
deny contains finding if {
	cap := input.config.max_orders_per_minute
	is_number(cap)
	state.orders_last_minute > cap
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("worker %s sent %v orders in the last minute (cap %v)", [worker, state.orders_last_minute, cap]),
		{"orders_last_minute": state.orders_last_minute, "max_orders_per_minute": cap},
	)
}

# METADATA
# title: Today's largest order is within the max order notional
# custom:
#   id: KG-EXE-202
#   severity: high
#   remediation: Halt the worker and find why an order above config.max_order_notional passed its pre-trade check.
deny contains finding if {
	cap := input.config.max_order_notional
	is_number(cap)
	state.largest_order_notional_today > cap
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("worker %s placed an order of %v today (cap %v)", [worker, state.largest_order_notional_today, cap]),
		{"largest_order_notional_today": state.largest_order_notional_today, "max_order_notional": cap},
	)
}

# METADATA
# title: Every live position is within its asset's max position
# custom:
#   id: KG-EXE-203
#   severity: high
#   remediation: >-
#     Reduce the position to its cap (the worker should be REDUCING) and find why the position check let
#     it grow.
deny contains finding if {
	some asset, size in object.get(state, "positions", {})
	size != 0
	cap := object.get(input, ["config", "max_position", asset], null)
	not within_position(size, cap)
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("%s/position/%s", [worker, asset]),
		position_message(size, asset, cap),
		{"position": size, "max_position": cap},
	)
}

# METADATA
# title: Today's loss is within the daily loss limit
# custom:
#   id: KG-EXE-204
#   severity: high
#   remediation: >-
#     Stop new entries (trading state REDUCING or HALTED) until the next trading day and review what
#     caused the loss.
deny contains finding if {
	is_object(state)
	limit := input.config.daily_loss_limit
	is_number(limit)
	not loss_within(limit)
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		daily_loss_message(limit),
		{
			"daily_pnl": object.get(state, "daily_pnl", null), "daily_loss_limit": limit,
			"trading_state": object.get(state, "trading_state", null),
		},
	)
}

# METADATA
# title: Request weight used this minute stays under the headroom of the exchange limit
# custom:
#   id: KG-EXE-205
#   severity: high
#   remediation: >-
#     Lower the worker's request rate or budget fraction; past the exchange limit come 429s and then an IP
#     ban (418).
deny contains finding if {
	used := state.used_weight_1m
	used > data.execution.rate_limit.headroom_fraction * weight_limit
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("worker %s used %v of %v request weight this minute (headroom %v)", [
			worker, used, weight_limit,
			data.execution.rate_limit.headroom_fraction,
		]),
		{"used_weight_1m": used, "weight_limit_1m": weight_limit},
	)
}

# METADATA
# title: Request weight used this minute stays under the headroom of the exchange limit
# description: Weight used against a limit nobody knows (neither the worker nor the document) has no known headroom.
# custom:
#   id: KG-EXE-205
#   severity: high
#   remediation: >-
#     Lower the worker's request rate or budget fraction; past the exchange limit come 429s and then an IP
#     ban (418).
deny contains finding if {
	used := state.used_weight_1m
	is_number(used)
	used > 0
	not is_number(weight_limit)
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("worker %s used %v request weight this minute against an unknown limit", [worker, used]),
		{"used_weight_1m": used, "weight_limit_1m": null},
	)
}

worker := object.get(input, "worker", "unknown-worker")

# Live rules only run when a live state is given (CI checks the declared config alone).
state := input.state if is_object(input.state)

# The exchange's own figure if the worker saw it, else the declared limit.
weight_limit := state.weight_limit_1m if is_number(state.weight_limit_1m)

else := object.get(input, ["exchange_limits", "request_weight_per_minute"], null)

position_message(size, asset, cap) := sprintf("position %v %s exceeds its max position %v", [size, asset, cap]) if {
	is_number(cap)
} else := sprintf("position %v %s has no max position configured", [size, asset])

within_position(size, cap) if {
	is_number(cap)
	abs(size) <= cap
}

loss_within(limit) if {
	is_number(state.daily_pnl)
	0 - state.daily_pnl <= limit
}

# Unknown is not zero: a PnL the worker could not work out (an asset it moved today has no price) is a finding.
daily_loss_message(limit) := sprintf("worker %s lost %v today (limit %v), trading state %v", [
	worker, 0 - state.daily_pnl, limit,
	object.get(state, "trading_state", null),
]) if {
	is_number(state.daily_pnl)
} else := sprintf(
	concat("", [
		"worker %s: today's PnL is unknown (no price for an asset it moved today), ",
		"so the daily loss limit %v is unchecked; trading state %v",
	]),
	[worker, limit, object.get(state, "trading_state", null)],
)
