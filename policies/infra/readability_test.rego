package keyguard.infra.readability_test

import rego.v1

import data.keyguard.infra.readability

test_readable_resources_pass if {
	host := {"type": "aws:ec2/instance:Instance", "name": "h", "id": "i-1", "properties": {}}
	count(readability.deny) == 0 with input as {"kind": "infra", "resources": [host]}
}

test_unreadable_resource_fires if {
	gone := {
		"type": "aws:ec2/instance:Instance", "name": "exec-host", "id": "i-1", "properties": {},
		"error": "InvalidInstanceID.NotFound",
	}
	some r in readability.deny with input as {"kind": "infra", "resources": [gone]}
	r.id == "KG-INF-112"
	contains(r.message, "NotFound")
}
