# METADATA
# title: The execution worker's kill switch
# description: The last line of defence must exist and be known to work.
package keyguard.execution.kill_switch

import rego.v1

import data.keyguard.lib

# METADATA
# title: The worker has an enabled kill switch
# custom:
#   id: KG-EXE-105
#   severity: high
#   remediation: Enable config.kill_switch so the worker can be halted at once without a deploy.
deny contains finding if {
	object.get(input, ["config", "kill_switch", "enabled"], null) != true
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("worker %s has no enabled kill switch", [worker]),
		{"kill_switch": object.get(input, ["config", "kill_switch"], null)},
	)
}

# METADATA
# title: The kill switch was tested recently
# custom:
#   id: KG-EXE-106
#   severity: high
#   remediation: Trip the kill switch in a drill, confirm orders stop, and record config.kill_switch.last_tested_at.
deny contains finding if {
	not tested_recently
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("kill switch of worker %s was last tested at %v (must be within %d days)", [
			worker, last_tested_at,
			data.execution.kill_switch.max_test_age_days,
		]),
		{"last_tested_at": last_tested_at, "now": object.get(input, "now", null)},
	)
}

worker := object.get(input, "worker", "unknown-worker")

last_tested_at := object.get(input, ["config", "kill_switch", "last_tested_at"], null)

tested_recently if {
	age := lib.days_since(last_tested_at)
	age >= 0
	age <= data.execution.kill_switch.max_test_age_days
}
