package keyguard.infra.secrets_kms

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: Every vault secret is encrypted with a customer-managed KMS key
# description: >-
#   With the AWS-managed key anyone with secretsmanager:GetSecretValue in the account can decrypt; a
#   customer-managed key adds a key policy and an audit trail of its own, and can be disabled in an incident.
# custom:
#   id: KG-INF-106
#   severity: high
#   remediation: Set the secret's kmsKeyId to the vault's customer-managed KMS key ARN.
deny contains result if {
	some secret in common.of_type("aws:secretsmanager/secret:Secret")
	key := common.prop(secret, "kmsKeyId")
	not customer_managed(key)
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(secret),
		sprintf("secret %s is not encrypted with a customer-managed KMS key (kmsKeyId %v)", [secret.name, key]),
		{"kmsKeyId": key},
	)
}

customer_managed(key) if {
	is_string(key)
	key != ""
	not startswith(key, data.infra.aws_managed_kms_alias_prefix)
	not aws_managed_key(key)
}

aws_managed_key(key) if {
	some k in common.of_type("aws:kms/key:Key")
	key in {k.id, common.prop(k, "arn"), common.prop(k, "keyId")}
	common.prop(k, "keyManager") == "AWS"
}
