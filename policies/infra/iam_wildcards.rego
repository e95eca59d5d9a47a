package keyguard.infra.iam_wildcards

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: IAM policies name exact actions and exact resources
# description: >-
#   A wildcard action or resource on the host role turns a compromise of the bot into a compromise of
#   the account; least privilege must be visible in the policy document itself. Wide means: * or ? anywhere
#   in an action (secretsmanager:Get*) or a resource ARN (except the sub-resources listed in
#   data.infra.iam.allowed_resource_wildcards, such as the streams of one exact log group), Allow with
#   NotAction or NotResource, and an attached AWS-managed policy listed as wide (AdministratorAccess, ...).
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
	not pending(p.policy)
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

# METADATA
# title: IAM policies name exact actions and exact resources
# custom:
#   id: KG-INF-108
#   severity: critical
#   remediation: >-
#     Replace wildcards with the exact actions (e.g. secretsmanager:GetSecretValue) and the exact resource
#     ARNs.
deny contains result if {
	some attached in common.attached_policies
	wide_managed_policy(attached.arn)
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(attached.resource),
		sprintf(
			"%s attaches the AWS-managed policy %s, which grants far more than exact actions on exact resources",
			[common.resource_id(attached.resource), attached.arn],
		),
		{"policyArn": attached.arn},
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
	some attached in common.attached_policies
	not common.aws_managed_name(attached.arn)
	not declared_policy(attached.arn)
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(attached.resource),
		sprintf(
			"%s attaches the policy %s, whose document is not in the input, so its privileges are unknown",
			[common.resource_id(attached.resource), attached.arn],
		),
		{"policyArn": attached.arn},
	)
}

# A customer-managed policy the input declares (readable or not: an unreadable one is reported on its own).
declared_policy(arn) if {
	some r in input.resources
	r.type == "aws:iam/policy:Policy"
	arn in {r.id, common.prop(r, "arn")}
}

# A null document at a preview is one not known yet (the pack reports those separately); anywhere else a null or
# missing document is an unknown set of privileges, which is never taken as least privilege.
pending(policy) if {
	policy == null
	object.get(input, "source", null) == data.infra.preview_source
}

wildcard_problems(statement) := (({problem |
	some action in common.actions(statement)
	common.wildcard(action)
	problem := sprintf("action %q", [action])
} | {problem |
	some resource in common.resources(statement)
	wide_resource(resource)
	problem := sprintf("resource %q", [resource])
}) | {problem |
	common.not_action(statement)
	problem := "NotAction (every action but a few)"
}) | {problem |
	common.not_resource(statement)
	problem := "NotResource (every resource but a few)"
}

# A resource that is not one exact ARN: a wildcard anywhere, or something that is no string at all.
wide_resource(resource) if not is_string(resource)

wide_resource(resource) if {
	common.wildcard(resource)
	not allowed_wildcard(resource)
}

allowed_wildcard(resource) if {
	some pattern in data.infra.iam.allowed_resource_wildcards
	regex.match(pattern, resource)
}

wide_managed_policy(arn) if {
	some name in data.infra.iam.wide_managed_policies
	common.aws_managed_name(arn) == lower(name)
}

wide_managed_policy(arn) if {
	some pattern in data.infra.iam.wide_managed_policy_patterns
	regex.match(pattern, common.aws_managed_name(arn))
}
