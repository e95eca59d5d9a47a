package keyguard.infra.iam_wildcards

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: IAM policies name exact actions and exact resources
# description: >-
#   A wildcard action or resource on the host role turns a compromise of the bot into a compromise of
#   the account; least privilege must be visible in the policy document itself.
# custom:
#   id: KG-INF-108
#   severity: critical
#   remediation: >-
#     Replace wildcards with the exact actions (e.g. secretsmanager:GetSecretValue) and the exact resource
#     ARNs.
deny contains result if {
	some p in common.identity_policies
	some statement in common.allow_statements(p.policy)
	some problem in wildcard_problems(statement)
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(p.resource),
		sprintf("%s allows %s", [common.resource_id(p.resource), problem]),
		statement,
	)
}

# METADATA
# title: IAM policies name exact actions and exact resources
# custom:
#   id: KG-INF-108
#   severity: critical
#   remediation: >-
#     Replace wildcards with the exact actions (e.g. secretsmanager:GetSecretValue) and the exact resource
#     ARNs.
deny contains result if {
	some p in common.identity_policies

	# null is a document not known yet (a preview); the pack reports those separately.
	p.policy != null
	not common.document(p.policy)
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(p.resource),
		sprintf(
			"%s has a policy document that cannot be read, so its privileges are unknown",
			[common.resource_id(p.resource)],
		),
		{"policy": p.policy},
	)
}

wildcard_problems(statement) := (({problem |
	some action in common.actions(statement)
	wildcard_action(action)
	problem := sprintf("action %q", [action])
} | {problem |
	some resource in common.resources(statement)
	resource == "*"
	problem := "resource \"*\""
}) | {problem |
	object.get(statement, "NotAction", null) != null
	problem := "NotAction (every action but a few)"
}) | {problem |
	object.get(statement, "NotResource", null) != null
	problem := "NotResource (every resource but a few)"
}

wildcard_action("*")

wildcard_action(action) if endswith(action, ":*")
