# METADATA
# title: Keys used at the paper stage
# description: Paper trading never sends real orders, so its key must not be able to.
package keyguard.execution.golive_keys

import rego.v1

import data.keyguard.lib

# METADATA
# title: A worker at the paper stage uses a key that cannot trade
# custom:
#   id: KG-LIVE-104
#   severity: high
#   remediation: Give the paper-stage worker a read-only key; a trading key is issued at micro-live.
deny contains finding if {
	stage := input.config.stage
	stage in data.execution.golive.no_trade_stages
	permissions := object.get(input, ["golive", "key_permissions"], null)
	trade := object.get(input, ["golive", "key_permissions", "trade"], null)
	trade != false
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("%s/golive/%s", [worker, stage]),
		sprintf("worker %s is at stage %s with a key whose trade permission is %v", [
			worker, stage,
			trade,
		]),
		{"stage": stage, "key_permissions": permissions},
	)
}

worker := object.get(input, "worker", "unknown-worker")
