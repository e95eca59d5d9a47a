package keyguard.infra.iam_test

import rego.v1

import data.keyguard.infra.iam_wildcards
import data.keyguard.infra.secret_access

vault_arn := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:bot-exec-1-AbCdEf"

vault_secret := {
	"type": "aws:secretsmanager/secret:Secret", "name": "bot-exec-1", "id": vault_arn,
	"properties": {"arn": vault_arn},
}

role_policy(statements) := {
	"type": "aws:iam/rolePolicy:RolePolicy", "name": "exec-host-policy", "id": "role:policy",
	"properties": {"role": "exec-host-role", "policy": json.marshal({"Version": "2012-10-17", "Statement": statements})},
}

allow(action, resource) := {"Effect": "Allow", "Action": action, "Resource": resource}

least := [
	allow(["secretsmanager:GetSecretValue"], [vault_arn]),
	allow("logs:PutLogEvents", "arn:aws:logs:eu-west-1:123456789012:log-group:keyguard:*"),
]

wildcard_ids(resources) := ids if {
	ids := {r.id | some r in iam_wildcards.deny} with input as {"kind": "infra", "resources": resources}
}

access(resources) := found if {
	found := secret_access.deny with input as {"kind": "infra", "resources": resources}
}

test_least_privilege_policy_passes if {
	wildcard_ids([vault_secret, role_policy(least)]) == set()
	count(access([vault_secret, role_policy(least)])) == 0
}

test_star_action_fires if {
	wildcard_ids([role_policy([allow("*", vault_arn)])]) == {"KG-INF-108"}
}

test_service_wildcard_action_fires if {
	wildcard_ids([role_policy([allow(["S3:*"], "arn:aws:s3:::b")])]) == {"KG-INF-108"}
}

test_star_resource_fires if {
	wildcard_ids([role_policy([allow("ec2:DescribeInstances", "*")])]) == {"KG-INF-108"}
}

test_not_action_fires if {
	statement := {"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::b"}
	wildcard_ids([role_policy([statement])]) == {"KG-INF-108"}
}

test_not_resource_fires if {
	statement := {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::b"}
	wildcard_ids([role_policy([statement])]) == {"KG-INF-108"}
}

test_deny_statement_with_wildcards_passes if {
	wildcard_ids([role_policy([{"Effect": "Deny", "Action": "*", "Resource": "*"}])]) == set()
}

test_unreadable_policy_document_fires if {
	broken := {"type": "aws:iam/policy:Policy", "name": "broken", "id": "p", "properties": {"policy": "{not json"}}
	wildcard_ids([broken]) == {"KG-INF-108"}
}

test_role_inline_policy_is_checked if {
	role := {
		"type": "aws:iam/role:Role", "name": "exec-host-role", "id": "exec-host-role",
		"properties": {"inlinePolicies": [{"name": "all", "policy": {"Statement": allow("*", "*")}}]},
	}
	wildcard_ids([role]) == {"KG-INF-108"}
}

test_reading_a_secret_outside_the_vault_fires if {
	other := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:payments-db"
	some r in access([vault_secret, role_policy([allow("secretsmanager:GetSecretValue", [vault_arn, other])])])
	r.id == "KG-INF-109"
	r.evidence.resource == other
}

test_secret_read_through_wildcard_action_with_wildcard_arn_fires if {
	statement := allow("secretsmanager:Get*", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:*")
	count(access([vault_secret, role_policy([statement])])) == 1
}

test_other_actions_do_not_count_as_secret_reads if {
	statement := allow("secretsmanager:DescribeSecret", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:other")
	count(access([vault_secret, role_policy([statement])])) == 0
}

test_unreadable_vault_secret_still_counts_as_the_vaults if {
	gone := object.union(vault_secret, {"error": "ResourceNotFoundException"})
	count(access([gone, role_policy(least)])) == 0
}

test_policy_document_not_known_yet_is_not_judged if {
	pending := {"type": "aws:iam/rolePolicy:RolePolicy", "name": "pending", "id": "p", "properties": {"policy": null}}
	found := {r.id | some r in iam_wildcards.deny} with input as {
		"kind": "infra", "source": "pulumi-preview",
		"resources": [pending],
	}
	found == set()
}

test_null_policy_document_outside_a_preview_is_unknown_privilege if {
	unknown := {"type": "aws:iam/rolePolicy:RolePolicy", "name": "unknown", "id": "p", "properties": {"policy": null}}
	wildcard_ids([unknown]) == {"KG-INF-108"}
	missing := {"type": "aws:iam/policy:Policy", "name": "missing", "id": "p", "properties": {}}
	wildcard_ids([missing]) == {"KG-INF-108"}
}

test_wildcard_inside_an_action_fires if {
	every action in ["secretsmanager:Get*", "SecretsManager:GetSecret?alue", "s3:*Object", "*:GetObject"] {
		wildcard_ids([role_policy([allow(action, vault_arn)])]) == {"KG-INF-108"}
	}
}

test_wildcard_inside_a_resource_arn_fires if {
	wildcard_ids([role_policy([allow("s3:GetObject", "arn:aws:s3:::release-bucket/*")])]) == {"KG-INF-108"}
	one_char := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyguard/?ot"
	wildcard_ids([role_policy([allow("secretsmanager:GetSecretValue", one_char)])]) == {"KG-INF-108"}
}

test_streams_of_one_exact_log_group_are_not_a_wildcard if {
	streams := "arn:aws:logs:eu-west-1:123456789012:log-group:/keyguard/dev:log-stream:*"
	wildcard_ids([role_policy([allow(["logs:CreateLogStream", "logs:PutLogEvents"], streams)])]) == set()
	any_group := "arn:aws:logs:eu-west-1:123456789012:log-group:*"
	wildcard_ids([role_policy([allow("logs:PutLogEvents", any_group)])]) == {"KG-INF-108"}
}

test_single_statement_object_and_lower_case_elements_are_read if {
	policy := {
		"type": "aws:iam/policy:Policy", "name": "p", "id": "p",
		"properties": {"policy": {"Statement": {"effect": "allow", "action": "secretsmanager:*", "resource": vault_arn}}},
	}
	wildcard_ids([policy]) == {"KG-INF-108"}
}

test_aws_managed_admin_policies_are_wide if {
	every arn in [
		"arn:aws:iam::aws:policy/AdministratorAccess",
		"arn:aws:iam::aws:policy/PowerUserAccess",
		"arn:aws:iam::aws:policy/IAMFullAccess",
		"arn:aws:iam::aws:policy/SecretsManagerReadWrite",
		"arn:aws:iam::aws:policy/AmazonS3FullAccess",
		"arn:aws:iam::aws:policy/job-function/SystemAdministrator",
	] {
		attachment := {
			"type": "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "name": "a", "id": "a",
			"properties": {"role": "exec-host-role", "policyArn": arn},
		}
		wildcard_ids([attachment]) == {"KG-INF-108"}
	}
}

test_aws_managed_ssm_core_policy_is_not_wide if {
	attachment := {
		"type": "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "name": "ssm", "id": "ssm",
		"properties": {"role": "exec-host-role", "policyArn": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"},
	}
	wildcard_ids([attachment]) == set()
}

test_managed_admin_policy_on_the_role_itself_is_wide_and_reads_every_secret if {
	role := {
		"type": "aws:iam/role:Role", "name": "exec-host-role", "id": "exec-host-role",
		"properties": {"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]},
	}
	wildcard_ids([role]) == {"KG-INF-108"}
	some r in access([vault_secret, role])
	r.id == "KG-INF-109"
}

test_allow_not_action_reads_every_secret if {
	statement := {"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::b"}
	some r in access([vault_secret, role_policy([statement])])
	r.evidence.resource == "*"
}

test_attached_policy_whose_document_is_unknown_fires if {
	arn := "arn:aws:iam::123456789012:policy/bot-extra"
	attachment := {
		"type": "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "name": "extra", "id": "extra",
		"properties": {"role": "exec-host-role", "policyArn": arn},
	}
	wildcard_ids([attachment]) == {"KG-INF-108"}
	declared := {"type": "aws:iam/policy:Policy", "name": "bot-extra", "id": arn, "properties": {
		"arn": arn,
		"policy": {"Statement": [allow("s3:GetObject", "arn:aws:s3:::b/k")]},
	}}
	wildcard_ids([attachment, declared]) == set()
}
