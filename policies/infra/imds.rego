package keyguard.infra.imds

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: Instances require IMDSv2 session tokens
# description: >-
#   With IMDSv1 any SSRF in the bot or service can read the instance role's credentials, and with them
#   every exchange key in the vault. Instances and launch templates alike; a missing or null metadataOptions
#   is AWS's default, which allows IMDSv1. An instance without its own options takes its launch template's.
# custom:
#   id: KG-INF-104
#   severity: high
#   remediation: Set metadataOptions.httpTokens to "required" on the instance (and its launch template).
deny contains result if {
	some type_token in data.infra.imds_resource_types
	some host in common.of_type(type_token)
	tokens := http_tokens(host)
	tokens != data.infra.required_http_tokens
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(host),
		sprintf("%s allows IMDSv1 (httpTokens is %v, not required)", [common.resource_id(host), tokens]),
		{"metadataOptions": common.prop(host, "metadataOptions")},
	)
}

http_tokens(host) := tokens if {
	tokens := common.prop_path(host, ["metadataOptions", "httpTokens"])
	tokens != null
} else := template_tokens(host)

# The httpTokens of the launch template the instance names (by id or name); null when there is none.
template_tokens(host) := tokens if {
	ref := common.prop(host, "launchTemplate")
	some template in common.of_type("aws:ec2/launchTemplate:LaunchTemplate")
	template_named(template, ref)
	tokens := common.prop_path(template, ["metadataOptions", "httpTokens"])
} else := null

template_named(template, ref) if template.id == object.get(ref, "id", null)

template_named(template, ref) if {
	name := object.get(ref, "name", null)
	name in {template.name, common.prop(template, "name")}
}
