package keyguard.infra.kms_test

import rego.v1

import data.keyguard.infra.kms_rotation
import data.keyguard.infra.secrets_kms

key(props) := {"type": "aws:kms/key:Key", "name": "vault-key", "id": "k-1", "properties": props}

secret(props) := {
	"type": "aws:secretsmanager/secret:Secret", "name": "bot-exec-1",
	"id": "arn:aws:secretsmanager:eu-west-1:1:secret:bot-exec-1", "properties": props,
}

cmk_arn := "arn:aws:kms:eu-west-1:123456789012:key/k-1"

infra(resources) := {"kind": "infra", "resources": resources}

test_secret_with_cmk_passes if {
	cmk := key({"arn": cmk_arn, "enableKeyRotation": true})
	count(secrets_kms.deny) == 0 with input as infra([cmk, secret({"kmsKeyId": cmk_arn})])
}

test_secret_without_kms_key_fires if {
	some r in secrets_kms.deny with input as infra([secret({})])
	r.id == "KG-INF-106"
	r.resource == "Secret/bot-exec-1"
}

test_secret_on_aws_managed_alias_fires if {
	count(secrets_kms.deny) == 1 with input as infra([secret({"kmsKeyId": "alias/aws/secretsmanager"})])
}

test_secret_on_aws_managed_key_arn_fires if {
	aws_key := key({"arn": cmk_arn, "keyManager": "AWS"})
	count(secrets_kms.deny) == 1 with input as infra([aws_key, secret({"kmsKeyId": cmk_arn})])
}

test_rotating_key_passes if {
	count(kms_rotation.deny) == 0 with input as infra([key({"enableKeyRotation": true})])
}

test_key_without_rotation_fires if {
	some r in kms_rotation.deny with input as infra([key({"enableKeyRotation": false})])
	r.id == "KG-INF-107"
	r.severity == "medium"
}

test_aws_managed_key_is_not_asked_to_rotate if {
	count(kms_rotation.deny) == 0 with input as infra([key({"keyManager": "AWS"})])
}
