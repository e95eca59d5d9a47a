# METADATA
# title: Order sizes at the early live stages
# description: >-
#   Micro-live and small-live exist to lose little while proving the bot; their order size is a fraction
#   of the target allocation.
package keyguard.execution.golive_sizing

import rego.v1

import data.keyguard.lib

# METADATA
# title: The max order notional is within the go-live stage's fraction of the target allocation
# custom:
#   id: KG-LIVE-103
#   severity: high
#   remediation: >-
#     Lower config.max_order_notional to the stage's cap (micro-live 0.1%, small-live 10% of
#     config.target_allocation).
deny contains finding if {
	stage := input.config.stage
	bps := data.execution.golive.max_order_bps_of_target[stage]
	cap := (bps * target) / data.execution.bps_per_unit
	notional := object.get(input, ["config", "max_order_notional"], null)
	not within(notional, cap)
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("%s/golive/%s", [worker, stage]),
		sprintf("max order notional %v at stage %s is above %v (%v bps of target allocation %v) or not set", [
			notional, stage, cap,
			bps, target,
		]),
		{"stage": stage, "max_order_notional": notional, "target_allocation": target},
	)
}

worker := object.get(input, "worker", "unknown-worker")

# An unknown target allocation bounds nothing, so the cap is 0 and any order size is a finding.
default target := 0

target := input.config.target_allocation if {
	is_number(input.config.target_allocation)
	input.config.target_allocation > 0
}

within(notional, cap) if {
	is_number(notional)
	notional > 0
	notional <= cap
}
