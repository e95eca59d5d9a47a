package keyguard.infra.imds

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: Instances require IMDSv2 session tokens
# description: >-
#   With IMDSv1 any SSRF in the bot or service can read the instance role's credentials, and with them
#   every exchange key in the vault.
# custom:
#   id: KG-INF-104
#   severity: high
#   remediation: Set metadataOptions.httpTokens to "required" on the instance (and its launch template).
deny contains result if {
	some host in common.of_type("aws:ec2/instance:Instance")
	tokens := object.get(object.get(host.properties, "metadataOptions", {}), "httpTokens", null)
	tokens != data.infra.required_http_tokens
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(host),
		sprintf("instance %s allows IMDSv1 (httpTokens is %v, not required)", [host.name, tokens]),
		{"metadataOptions": object.get(host.properties, "metadataOptions", null)},
	)
}
