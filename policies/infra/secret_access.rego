package keyguard.infra.secret_access

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: The host role reads only the vault's own secrets
# description: >-
#   A role that can read secrets outside the vault (other stacks, other teams, wildcard ARNs) widens what a
#   compromised bot can take; every secret-reading grant must name one of the vault's secret ARNs exactly.
# custom:
#   id: KG-INF-109
#   severity: high
#   remediation: >-
#     Limit secretsmanager:GetSecretValue to the exact ARNs of the vault's secrets (the stack output
#     secretArns).
deny contains result if {
	some p in common.identity_policies
	some statement in common.allow_statements(p.policy)
	reads_secrets(statement)
	some resource in readable_resources(statement)
	not resource in common.vault_secret_arns
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(p.resource),
		sprintf(
			"%s can read secret %v, which is not one of the vault's secrets",
			[common.resource_id(p.resource), resource],
		),
		{"resource": resource, "vault_secrets": sort(common.vault_secret_arns)},
	)
}

# METADATA
# title: The host role reads only the vault's own secrets
# custom:
#   id: KG-INF-109
#   severity: high
#   remediation: >-
#     Limit secretsmanager:GetSecretValue to the exact ARNs of the vault's secrets (the stack output
#     secretArns).
deny contains result if {
	some attached in common.attached_policies
	common.aws_managed_name(attached.arn) in {lower(name) | some name in data.infra.iam.secret_reading_managed_policies}
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(attached.resource),
		sprintf(
			"%s attaches the AWS-managed policy %s, which can read every secret in the account",
			[common.resource_id(attached.resource), attached.arn],
		),
		{"policyArn": attached.arn, "vault_secrets": sort(common.vault_secret_arns)},
	)
}

reads_secrets(statement) if {
	some action in data.infra.secret_read_actions
	common.grants(statement, action)
}

# NotResource reaches every resource but a few, so every secret in the account.
readable_resources(statement) := ["*"] if common.not_resource(statement)

else := common.resources(statement)
