# METADATA
# title: Minimum fill threshold
# description: Without a minimum fill the worker can churn dust fills that cost fees and rate-limit weight.
package keyguard.execution.fills

import rego.v1

import data.keyguard.lib

# METADATA
# title: The worker has a minimum-fill threshold
# custom:
#   id: KG-EXE-112
#   severity: medium
#   remediation: >-
#     Set config.min_fill_ratio to a positive fraction (e.g. 0.1) below which partial fills are cancelled
#     rather than chased.
deny contains finding if {
	ratio := object.get(input, ["config", "min_fill_ratio"], null)
	not valid_ratio(ratio)
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("worker %s has no minimum-fill threshold (min_fill_ratio is %v)", [worker, ratio]),
		{"min_fill_ratio": ratio},
	)
}

worker := object.get(input, "worker", "unknown-worker")

valid_ratio(ratio) if {
	is_number(ratio)
	ratio > 0
	ratio <= 1
}
