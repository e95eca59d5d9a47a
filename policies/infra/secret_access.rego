package keyguard.infra.secret_access

import rego.v1

import data.keyguard.infra.lib

# METADATA
# title: The host role reads only the vault's own secrets
# description: >-
#   A role that can read secrets outside the vault (other stacks, other teams, wildcard ARNs) widens what a
#   compromised bot can take; every secret-reading grant must name one of the vault's secret ARNs exactly.
# custom:
#   id: KG-INF-109
#   severity: high
#   remediation: Limit secretsmanager:GetSecretValue to the exact ARNs of the vault's secrets (the stack output secretArns).
deny contains result if {
	some p in lib.identity_policies
	some statement in lib.allow_statements(p.policy)
	reads_secrets(statement)
	some resource in lib.resources(statement)
	not resource in lib.vault_secret_arns
	result := {
		"id": "KG-INF-109",
		"severity": "high",
		"resource": lib.resource_id(p.resource),
		"message": sprintf("%s can read secret %v, which is not one of the vault's secrets", [lib.resource_id(p.resource), resource]),
		"remediation": "Limit secretsmanager:GetSecretValue to the exact ARNs of the vault's secrets (the stack output secretArns).",
		"evidence": {"resource": resource, "vault_secrets": sort(lib.vault_secret_arns)},
	}
}

reads_secrets(statement) if {
	some pattern in lib.actions(statement)
	some action in data.infra.secret_read_actions
	lib.action_grants(pattern, action)
}
