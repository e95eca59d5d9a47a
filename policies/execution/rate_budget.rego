# METADATA
# title: The limiter's share of the exchange rate limit
# description: Running at the exchange's limit invites 429s and then a 418 IP ban; keep headroom.
package keyguard.execution.rate_budget

import rego.v1

import data.keyguard.lib

# METADATA
# title: The rate-limit budget leaves headroom under the exchange limit
# custom:
#   id: KG-EXE-107
#   severity: high
#   remediation: Set config.rate_limit_budget_fraction to at most the headroom fraction (0.9) of the exchange limit.
deny contains finding if {
	not within_headroom(fraction)
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("rate-limit budget fraction %v is above the headroom %v of the exchange limit, or not set", [
			fraction,
			data.execution.rate_limit.headroom_fraction,
		]),
		{"rate_limit_budget_fraction": fraction, "exchange_limits": object.get(input, "exchange_limits", null)},
	)
}

worker := object.get(input, "worker", "unknown-worker")

fraction := object.get(input, ["config", "rate_limit_budget_fraction"], null)

within_headroom(value) if {
	is_number(value)
	value > 0
	value <= data.execution.rate_limit.headroom_fraction
}
