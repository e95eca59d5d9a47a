package keyguard.infra.readability

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: Every declared resource can be read live
# description: >-
#   The drift collector marks a resource it could not read (deleted, access denied, throttled) with an
#   error; unknown is never safe, so an unreadable resource is a finding rather than a silent pass.
# custom:
#   id: KG-INF-112
#   severity: high
#   remediation: >-
#     Check that the resource still exists and that the collector's role may describe it, then re-run the
#     check.
deny contains result if {
	some r in input.resources
	is_string(object.get(r, "error", null))
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(r),
		sprintf("%s could not be read: %s", [common.resource_id(r), r.error]),
		{"error": r.error},
	)
}
