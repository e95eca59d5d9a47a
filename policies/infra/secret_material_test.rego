package keyguard.infra.secret_material_test

import rego.v1

import data.keyguard.infra.secret_material

instance(props) := {"type": "aws:ec2/instance:Instance", "name": "exec-host", "id": "i-1", "properties": props}

infra(resources) := {"kind": "infra", "resources": resources}

fields(props) := found if {
	found := {r.evidence.field | some r in secret_material.deny} with input as infra([instance(props)])
}

clean_user_data := concat("\n", [
	"#!/bin/bash",
	"export KEYGUARD_SECRETS_BACKEND=aws_secretsmanager",
	"export KEYGUARD_SECRET_ARNS=arn:aws:secretsmanager:eu-west-1:1:secret:x",
	"systemctl enable --now keyguard",
	"",
])

test_clean_user_data_and_tags_pass if {
	fields({"userData": clean_user_data, "tags": {"purpose": "execution", "rotation-due": "2027-02-23"}}) == set()
}

test_access_key_in_user_data_fires if {
	fields({"userData": "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"}) == {"userData"}
}

test_api_secret_assignment_in_user_data_fires if {
	fields({"userData": "BINANCE_API_SECRET=Zx81kq0pL2mN4bV6cX8z\n"}) == {"userData"}
}

test_private_key_in_base64_user_data_fires if {
	fields({"userDataBase64": base64.encode("-----BEGIN OPENSSH PRIVATE KEY-----\nEXAMPLE\n")}) == {"userDataBase64"}
}

test_secret_in_tag_fires if {
	some r in secret_material.deny with input as infra([instance({"tags": {"api_key": "k8s7d6f5g4h3j2k1"}})])
	r.id == "KG-INF-110"
	r.evidence.field == "tags.api_key"
	not contains(r.message, "k8s7d6f5g4h3j2k1")
}
