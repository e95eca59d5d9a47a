# METADATA
# title: Least privilege for exchange API keys
# description: >-
#   A leaked key must be useless for moving funds: bots trade but never withdraw or transfer,
#   read-only purposes never trade, one key serves one purpose, and unreadable permissions are findings.
package keyguard.keys.privilege

import rego.v1

import data.keyguard.lib

# A purpose not listed as read-only is treated as a trading bot: an unknown purpose is never safe.
bot(key) if not purpose(key) in data.keys.read_only_purposes

read_only(key) if purpose(key) in data.keys.read_only_purposes

# Compared trimmed and in lower case: "Monitoring " is the monitoring purpose, not an unknown one.
purpose(key) := lib.canonical(object.get(key, "purpose", null))

# METADATA
# title: A bot key cannot withdraw
# custom:
#   id: KG-KEY-101
#   severity: critical
#   remediation: >-
#     Create a new key without withdrawal permission, move the bot to it, and delete this key at the
#     exchange.
deny contains finding if {
	some key in input.keys
	bot(key)
	lib.can(key, "withdraw")
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("bot key %s (purpose %s) can withdraw", [key.id, purpose(key)]),
		{
			"purpose": purpose(key),
			"permissions": object.get(key, "permissions", null),
			"raw_flags": lib.raw_flags_granting(key, "withdraw"),
		},
	)
}

# METADATA
# title: A bot key cannot transfer funds (internal, universal or sub-account transfer)
# custom:
#   id: KG-KEY-102
#   severity: critical
#   remediation: >-
#     Disable every transfer permission (internal, universal, sub-account) on the key, or replace it with
#     a trade-only key.
deny contains finding if {
	some key in input.keys
	bot(key)
	lib.can(key, "transfer")
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("bot key %s (purpose %s) can transfer funds", [key.id, purpose(key)]),
		{
			"purpose": purpose(key),
			"permissions": object.get(key, "permissions", null),
			"raw_flags": lib.raw_flags_granting(key, "transfer"),
		},
	)
}

# METADATA
# title: A monitoring or portfolio key cannot trade
# custom:
#   id: KG-KEY-103
#   severity: high
#   remediation: Replace the key with a read-only key; monitoring and portfolio tools never need to place orders.
deny contains finding if {
	some key in input.keys
	read_only(key)
	lib.can(key, "trade")
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("%s key %s can trade", [purpose(key), key.id]),
		{
			"purpose": purpose(key),
			"permissions": object.get(key, "permissions", null),
			"raw_flags": lib.raw_flags_granting(key, "trade"),
		},
	)
}

# METADATA
# title: A monitoring or portfolio key cannot move funds
# custom:
#   id: KG-KEY-104
#   severity: critical
#   remediation: Replace the key with a read-only key and delete this one at the exchange.
deny contains finding if {
	some key in input.keys
	read_only(key)
	moves := {class | some class in ["transfer", "withdraw"]; lib.can(key, class)}
	count(moves) > 0
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("%s key %s can %s", [purpose(key), key.id, concat(" and ", sort(moves))]),
		{"purpose": purpose(key), "permissions": object.get(key, "permissions", null)},
	)
}

# METADATA
# title: One key serves exactly one purpose and one service
# custom:
#   id: KG-KEY-105
#   severity: high
#   remediation: Issue a separate key per purpose and per service so each can be revoked and bounded on its own.
deny contains finding if {
	some identity in {lib.key_identity(key) | some key in input.keys}
	entries := [key | some key in input.keys; lib.key_identity(key) == identity]
	purposes := {purpose(key) | some key in entries}
	services := {lib.canonical(service) | some key in entries; some service in object.get(key, "services", [])}
	shared(purposes, services)
	resource := min({lib.key_resource(key) | some key in entries})
	finding := lib.finding(
		rego.metadata.rule(),
		resource,
		sprintf("key %s is shared by purposes %v and services %v", [resource, sort(purposes), sort(services)]),
		{"purposes": sort(purposes), "services": sort(services)},
	)
}

# METADATA
# title: A key's permissions are known (read from the exchange or declared)
# custom:
#   id: KG-KEY-106
#   severity: high
#   remediation: >-
#     Make the key inspectable (fix the inspection error or declare its permissions) and re-run the check;
#     an unreadable key is treated as able to do anything.
deny contains finding if {
	some key in input.keys
	reasons := unknown_permission_reasons(key)
	count(reasons) > 0
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("permissions of key %s are unknown: %s", [key.id, concat("; ", sort(reasons))]),
		{
			"permissions": object.get(key, "permissions", null),
			"permissions_source": object.get(key, "permissions_source", null),
			"inspection_error": object.get(key, "inspection_error", null),
		},
	)
}

unknown_permission_reasons(key) := reasons if {
	from_fields := unreadable_classes(key) | missing_permissions(key)
	reasons := (from_fields | unreadable_source(key)) | inspection_failed(key)
}

shared(purposes, _) if count(purposes) > 1

shared(_, services) if count(services) > 1

unreadable_classes(key) := {sprintf("%s not readable", [class]) |
	is_object(key.permissions)
	some class in data.lib.permission_classes
	not is_boolean(object.get(key.permissions, class, null))
}

unreadable_source(key) := {sprintf("permissions_source is %v", [source])} if {
	source := object.get(key, "permissions_source", null)
	not source in data.keys.readable_permission_sources
} else := set()

inspection_failed(key) := {sprintf("inspection failed: %s", [key.inspection_error])} if {
	is_string(key.inspection_error)
	key.inspection_error != ""
} else := set()

missing_permissions(key) := {"no permissions recorded"} if {
	not is_object(object.get(key, "permissions", null))
} else := set()
