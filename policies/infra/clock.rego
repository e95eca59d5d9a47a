package keyguard.infra.clock

import rego.v1

import data.keyguard.lib

# METADATA
# title: The infra document's own time (now) is a valid RFC 3339 time
# description: >-
#   A document that states a time that does not exist (2026-02-30) says something false about itself; it is
#   reported rather than read past.
# custom:
#   id: KG-INF-113
#   severity: medium
#   remediation: Set now to a real RFC 3339 UTC time (e.g. 2026-11-25T00:00:00Z), or leave it out.
deny contains finding if {
	problem := lib.clock_problem
	finding := lib.finding(
		rego.metadata.rule(),
		"now",
		sprintf("the infra document's %s", [problem]),
		{"now": input.now},
	)
}
