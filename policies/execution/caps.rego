# METADATA
# title: Risk caps in the execution worker's config
# description: >-
#   A buggy bot must be bounded - per-order size, order rate, per-asset position and daily loss are all
#   capped.
package keyguard.execution.caps

import rego.v1

import data.keyguard.lib

# METADATA
# title: The max order notional is set and at most 2% of the portfolio
# custom:
#   id: KG-EXE-101
#   severity: high
#   remediation: Set config.max_order_notional to at most 2% of the portfolio value.
deny contains finding if {
	limit := (data.execution.caps.max_order_bps_of_portfolio * portfolio) / data.execution.bps_per_unit
	not within(config_value("max_order_notional"), limit)
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("max order notional %s (limit %v: %v bps of portfolio %v)", [
			cap_problem(config_value("max_order_notional")), limit,
			data.execution.caps.max_order_bps_of_portfolio, portfolio,
		]),
		{"max_order_notional": config_value("max_order_notional"), "portfolio_value": portfolio},
	)
}

# METADATA
# title: Orders per minute are capped
# custom:
#   id: KG-EXE-102
#   severity: high
#   remediation: Set config.max_orders_per_minute to a positive cap well under the exchange's order limits.
deny contains finding if {
	not positive(config_value("max_orders_per_minute"))
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf(
			"worker %s has no orders-per-minute cap (max_orders_per_minute is %v)",
			[worker, config_value("max_orders_per_minute")],
		),
		{"max_orders_per_minute": config_value("max_orders_per_minute")},
	)
}

# METADATA
# title: Every asset has a positive max position
# custom:
#   id: KG-EXE-103
#   severity: high
#   remediation: Set config.max_position with a positive cap (base units) for every asset the worker trades.
deny contains finding if {
	some problem in position_cap_problems
	finding := lib.finding(rego.metadata.rule(), problem.resource, problem.message, problem.evidence)
}

# METADATA
# title: The daily loss limit is set and at most 5% of the portfolio
# custom:
#   id: KG-EXE-104
#   severity: high
#   remediation: Set config.daily_loss_limit to at most 5% of the portfolio value.
deny contains finding if {
	limit := (data.execution.caps.max_daily_loss_bps_of_portfolio * portfolio) / data.execution.bps_per_unit
	not within(config_value("daily_loss_limit"), limit)
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("daily loss limit %s (limit %v: %v bps of portfolio %v)", [
			cap_problem(config_value("daily_loss_limit")), limit,
			data.execution.caps.max_daily_loss_bps_of_portfolio, portfolio,
		]),
		{"daily_loss_limit": config_value("daily_loss_limit"), "portfolio_value": portfolio},
	)
}

worker := object.get(input, "worker", "unknown-worker")

position_cap_problems contains problem if {
	positions := config_value("max_position")
	not non_empty_object(positions)
	problem := {
		"resource": worker,
		"message": sprintf("worker %s has no max position per asset", [worker]),
		"evidence": {"max_position": positions},
	}
}

position_cap_problems contains problem if {
	some asset, cap in config_value("max_position")
	not positive(cap)
	problem := {
		"resource": sprintf("%s/position/%s", [worker, asset]),
		"message": sprintf("max position for %s is %v, not a positive cap", [asset, cap]),
		"evidence": {"max_position": {asset: cap}},
	}
}

config_value(name) := object.get(input, ["config", name], null)

# An unknown or non-positive portfolio bounds nothing, so every fraction of it is 0 and any cap fails.
default portfolio := 0

portfolio := input.portfolio_value if positive(input.portfolio_value)

cap_problem(value) := sprintf("is not a positive cap (%v)", [value]) if not positive(value)

else := sprintf("is %v, above the limit", [value])

positive(value) if {
	is_number(value)
	value > 0
}

within(value, limit) if {
	positive(value)
	value <= limit
}

non_empty_object(value) if {
	is_object(value)
	count(value) > 0
}
