# METADATA
# title: The worker document's own time
# description: Kill-switch drills, heartbeats and go-live holds are all measured from the document's now.
package keyguard.execution.clock

import rego.v1

import data.keyguard.lib

# METADATA
# title: The worker document's own time (now) is a valid RFC 3339 time
# description: >-
#   A now that is no real time (2026-02-30) must not be replaced by another clock in silence: it is a finding,
#   and the checks that need the time cannot pass.
# custom:
#   id: KG-EXE-113
#   severity: high
#   remediation: >-
#     Set now to a real RFC 3339 UTC time (e.g. 2026-11-25T00:00:00Z); the worker and gateway write it from
#     their clock.
deny contains finding if {
	problem := lib.clock_problem
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("%s/now", [worker]),
		sprintf("worker %s's %s, so its kill-switch drill and heartbeat cannot be checked", [worker, problem]),
		{"now": input.now},
	)
}

worker := object.get(input, "worker", "unknown-worker")
