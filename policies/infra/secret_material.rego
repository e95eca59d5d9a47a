package keyguard.infra.secret_material

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: No secret material in user data or tags
# description: >-
#   User data and tags are readable by anyone with ec2:Describe* and are kept in Pulumi state and
#   CloudTrail; access keys, private keys and secret assignments belong in the vault. User data is read as
#   written and, when it is base64 (launch templates always are), decoded too. A secret is an AWS access key
#   id, a private key block of any type, or a random-looking value (16+ base64 characters, mixed classes)
#   assigned to a name that says it is a secret (AWS_SECRET_ACCESS_KEY=, BINANCE_API_SECRET=, api_key:);
#   a secret's name or ARN (SecretName: keyguard/binance/bot) is not one.
# custom:
#   id: KG-INF-110
#   severity: critical
#   remediation: Remove the value, rotate it at its issuer, and have the host fetch it from Secrets Manager at start-up.
deny contains result if {
	some r in common.readable
	some [field, text] in texts(r)
	some kind in secret_kinds(text)
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(r),
		sprintf("%s has what looks like secret material in %s (%s)", [common.resource_id(r), field, kind]),
		# The evidence names the field and the kind of secret, never the matched value.
		{"field": field, "pattern": kind},
	)
}

# Every text of a resource that may carry secrets, as [field, text]: user data as written and decoded, and tags.
texts(r) := {pair |
	some field in data.infra.secret_material.user_data_fields
	some pair in user_data(r, field)
} | {pair |
	some field in data.infra.secret_material.tag_fields
	some pair in tags(r, field)
}

user_data(r, field) := {[field, text]} | {[field, plain] | some plain in decoded(text)} if {
	text := common.prop(r, field)
	is_string(text)
}

# Base64 user data (padded or not, wrapped or not) decoded, twice over for user data encoded twice.
decoded(text) := {plain |
	some once in base64_decodings(text)
	some plain in ({once} | base64_decodings(once))
}

base64_decodings(text) := {plain |
	compact := regex.replace(text, `\s+`, "")
	some plain in ({base64.decode(compact) | base64.is_valid(compact)} | {base64url.decode(compact)})
	plain != text
}

tags(r, field) := {[sprintf("%s.%s", [field, k]), sprintf("%s=%v", [k, v])] |
	tags := common.prop(r, field)
	is_object(tags)
	some k, v in tags
} | {[sprintf("%s.%v", [field, tag.Key]), sprintf("%v=%v", [tag.Key, tag.Value])] |
	# AWS's own shape: a list of {Key, Value}.
	some tag in common.list(common.prop(r, field))
	tag.Key
}

secret_kinds(text) := {kind |
	some kind, pattern in data.infra.secret_material.shapes
	regex.match(pattern, text)
} | {sprintf("a secret assigned to %s", [name]) |
	some match in regex.find_all_string_submatch_n(data.infra.secret_material.assignment, text, -1)
	name := match[1]
	secret_name(name)
	random_value(match[2])
}

# A name that says its value is a secret (normalised: lower case, letters and digits only), not a secret's id,
# ARN, name or path.
secret_name(name) if {
	normalised := regex.replace(lower(name), `[^a-z0-9]`, "")
	regex.match(data.infra.secret_material.secret_names, normalised)
	not regex.match(data.infra.secret_material.not_secret_names, normalised)
}

# Random-looking: long, base64 characters only, a long unbroken run of letters and digits, and character
# classes (upper, lower, digit) changing often, as in generated keys and unlike words, paths and names.
random_value(value) if {
	count(value) >= data.infra.secret_material.min_value_length
	regex.match(data.infra.secret_material.value, value)
	regex.match(data.infra.secret_material.random_run, value)
	class_changes(value) >= data.infra.secret_material.min_class_change_ratio * count(value)
}

class_changes(value) := count([i |
	classes := [char_class(c) | some c in split(value, "")]
	some i in numbers.range(1, count(classes) - 1)
	classes[i] != classes[i - 1]
	classes[i] != "other"
	classes[i - 1] != "other"
])

char_class(c) := "upper" if regex.match(`^[A-Z]$`, c)

char_class(c) := "lower" if regex.match(`^[a-z]$`, c)

char_class(c) := "digit" if regex.match(`^[0-9]$`, c)

char_class(c) := "other" if not regex.match(`^[A-Za-z0-9]$`, c)
