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
	fields({"userDataBase64": base64.encode(fake_key_block("OPENSSH ", ""))}) == {"userDataBase64"}
}

test_secret_in_tag_fires if {
	some r in secret_material.deny with input as infra([instance({"tags": {"api_key": "k8s7d6f5g4h3j2k1"}})])
	r.id == "KG-INF-110"
	r.evidence.field == "tags.api_key"
	not contains(r.message, "k8s7d6f5g4h3j2k1")
}

test_aws_secret_access_key_exported_in_user_data_fires if {
	script := "#!/bin/bash\nexport AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
	fields({"userData": script}) == {"userData"}
}

test_exchange_secrets_under_secret_names_fire if {
	every text in [
		"binance:\n  api_secret: \"Zx81kq0pL2mN4bV6cX8z9Q7wE3rT5yU1iO\"\n",
		"OKX_SECRET=8F3A1B2C4D5E6F708192A3B4C5D6E7F8\n",
		"{\"apiSecret\": \"a8Kd93LmQ02nXv71PzR5tY6uW4eB0cHj\"}",
		"BYBIT_API_SECRET='qW3eR5tY7uI9oP1aS3dF5gH7jK9lZ2xC4vB6'",
	] {
		fields({"userData": text}) == {"userData"}
	}
}

# A PEM header assembled here, with an obviously fake body, so the repository holds no key-shaped block.
fake_key_block(kind, suffix) := sprintf(
	"%sBEGIN %sPRIVATE KEY%s%s\nTEST-ONLY-NOT-A-KEY\n",
	[dashes, kind, suffix, dashes],
)

dashes := "-----"

test_private_key_blocks_of_every_type_fire if {
	every kind in ["", "RSA ", "EC ", "DSA ", "ENCRYPTED ", "OPENSSH "] {
		fields({"userData": sprintf("cat > /etc/key <<EOF\n%s\nEOF\n", [fake_key_block(kind, "")])}) == {"userData"}
	}
	fields({"userData": fake_key_block("PGP ", " BLOCK")}) == {"userData"}
}

test_base64_user_data_of_a_launch_template_is_decoded if {
	script := "#!/bin/bash\nexport BINANCE_API_SECRET=Zx81kq0pL2mN4bV6cX8z9Q7wE3rT5yU1iO\n"
	template := {
		"type": "aws:ec2/launchTemplate:LaunchTemplate", "name": "bots", "id": "lt-1",
		"properties": {"userData": base64.encode(script)},
	}
	some r in secret_material.deny with input as infra([template])
	r.evidence.field == "userData"
	unpadded := trim_right(base64.encode(fake_key_block("OPENSSH ", "")), "=")
	fields({"userData": unpadded}) == {"userData"}
}

test_invalid_base64_is_read_as_text_only if {
	fields({"userDataBase64": "not base64 at all!"}) == set()
}

test_a_secrets_name_or_arn_is_not_secret_material if {
	fields({"tags": {
		"SecretName": "keyguard/binance/bot",
		"secret": "keyguard/binance/bot",
		"secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyguard/binance/bot-AbCdEf",
		"keyguard:secret": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyguard/binance/bot-AbCdEf",
		"api_key_secret_id": "keyguard/dev/bot-exec-1",
	}}) == set()
	fields({"userData": concat("\n", [
		"aws_secret: {secret_id: keyguard/dev/bot-exec-1, region: eu-west-1}",
		"api_token_secret: {secret_id: keyguard/dev/service/api-token, region: eu-west-1}",
		"export KEYGUARD_SECRETS_BACKEND=aws_secretsmanager",
		"export SECRET_ARN=arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyguard/binance/bot-AbCdEf",
	])}) == set()
}

test_secret_in_aws_shaped_tag_list_fires if {
	tag := {"Key": "BINANCE_API_SECRET", "Value": "Zx81kq0pL2mN4bV6cX8z9Q7wE3rT5yU1iO"}
	fields({"tags": [tag]}) == {"tags.BINANCE_API_SECRET"}
	fields({"tags": [{"Key": "SecretName", "Value": "keyguard/binance/bot"}]}) == set()
}
