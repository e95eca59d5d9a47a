package keyguard.infra.secret_material

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: No secret material in user data or tags
# description: >-
#   User data and tags are readable by anyone with ec2:Describe* and are kept in Pulumi state and
#   CloudTrail; access keys, private keys and secret assignments belong in the vault.
# custom:
#   id: KG-INF-110
#   severity: critical
#   remediation: Remove the value, rotate it at its issuer, and have the host fetch it from Secrets Manager at start-up.
deny contains result if {
	some r in common.readable
	some field, text in texts(r)
	some pattern in data.infra.secret_material_patterns
	regex.match(pattern, text)
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(r),
		sprintf("%s has what looks like secret material in %s", [common.resource_id(r), field]),
		# The evidence names the field and the pattern, never the matched value.
		{"field": field, "pattern": pattern},
	)
}

texts(r) := object.union_n([user_data(r), user_data_base64(r), tags(r, "tags"), tags(r, "tagsAll")])

user_data(r) := {"userData": text} if {
	text := common.prop(r, "userData")
	is_string(text)
} else := {}

user_data_base64(r) := {"userDataBase64": base64.decode(encoded)} if {
	encoded := common.prop(r, "userDataBase64")
	is_string(encoded)
	base64.is_valid(encoded)
} else := {}

tags(r, field) := {sprintf("%s.%s", [field, k]): sprintf("%s=%v", [k, v]) |
	some k, v in common.prop(r, field)
} if {
	is_object(common.prop(r, field))
} else := {}
