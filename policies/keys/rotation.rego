# METADATA
# title: Rotation and revocation of exchange API keys
# description: >-
#   Old keys have had the longest time to leak; replaced keys must die promptly; exchange-side expiry
#   must not surprise the bot.
package keyguard.keys.rotation

import rego.v1

import data.keyguard.lib

# METADATA
# title: A key is younger than the maximum age
# custom:
#   id: KG-ROT-101
#   severity: high
#   remediation: Rotate the key now - create a replacement, move the bot to it, then delete this key at the exchange.
deny contains finding if {
	some key in input.keys
	in_service(key)
	age := lib.days_since(key.created_at)
	age > data.keys.rotation.max_age_days
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("key %s is %d days old (maximum %d)", [key.id, floor(age), data.keys.rotation.max_age_days]),
		{"created_at": key.created_at, "now": input.now},
	)
}

# METADATA
# title: A key approaching the maximum age is scheduled for rotation
# custom:
#   id: KG-ROT-102
#   severity: medium
#   remediation: Schedule the key's rotation before it reaches the maximum age.
deny contains finding if {
	some key in input.keys
	in_service(key)
	age := lib.days_since(key.created_at)
	age >= data.keys.rotation.warn_age_days
	age <= data.keys.rotation.max_age_days
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf(
			"key %s is %d days old; rotate it before %d days",
			[key.id, floor(age), data.keys.rotation.max_age_days],
		),
		{"created_at": key.created_at, "now": input.now},
	)
}

# METADATA
# title: A key's creation time is known
# custom:
#   id: KG-ROT-103
#   severity: medium
#   remediation: Record the key's creation time (from the exchange or the operator) so its age can be checked.
deny contains finding if {
	some key in input.keys
	in_service(key)
	not age_known(key)
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("age of key %s is unknown (created_at is %v)", [key.id, object.get(key, "created_at", null)]),
		{"created_at": object.get(key, "created_at", null)},
	)
}

# METADATA
# title: A superseded key is revoked within the grace period after its replacement was created
# custom:
#   id: KG-ROT-104
#   severity: high
#   remediation: Delete the superseded key at the exchange; its replacement has been live longer than the grace period.
deny contains finding if {
	some key in input.keys
	in_service(key)
	hours := lib.ns_since(key.superseded_at) / lib.ns_per_hour
	hours > data.keys.rotation.superseded_grace_hours
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf(
			"key %s is still active %d hours after its replacement was created (grace %d hours)",
			[key.id, floor(hours), data.keys.rotation.superseded_grace_hours],
		),
		{"superseded_at": key.superseded_at, "active": object.get(key, "active", null), "now": input.now},
	)
}

# METADATA
# title: A superseded key is revoked within the grace period after its replacement was created
# description: A superseded_at that is no real time cannot show the grace period is not over.
# custom:
#   id: KG-ROT-104
#   severity: high
#   remediation: Delete the superseded key at the exchange; its replacement has been live longer than the grace period.
deny contains finding if {
	some key in input.keys
	in_service(key)
	superseded_at := object.get(key, "superseded_at", null)
	lib.invalid_time(superseded_at)
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("key %s was superseded at %v, which is not a valid time, so its grace period cannot be checked", [
			key.id,
			superseded_at,
		]),
		{"superseded_at": superseded_at, "active": object.get(key, "active", null)},
	)
}

# METADATA
# title: A key does not expire at the exchange within the warning window
# custom:
#   id: KG-ROT-105
#   severity: medium
#   remediation: Rotate the key before its exchange-side expiry, or extend it, so signed calls do not start failing.
deny contains finding if {
	some key in input.keys
	in_service(key)
	days_left := 0 - lib.days_since(key.expires_at)

	# "Within 7 days" includes the seventh day.
	days_left <= data.keys.rotation.expiry_warning_days
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		expiry_message(key, days_left),
		{"expires_at": key.expires_at, "now": input.now},
	)
}

# METADATA
# title: A key does not expire at the exchange within the warning window
# description: An expires_at that is no real time cannot show the key is not about to expire.
# custom:
#   id: KG-ROT-105
#   severity: medium
#   remediation: Rotate the key before its exchange-side expiry, or extend it, so signed calls do not start failing.
deny contains finding if {
	some key in input.keys
	in_service(key)
	expires_at := object.get(key, "expires_at", null)
	lib.invalid_time(expires_at)
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("key %s expires at %v, which is not a valid time, so its expiry cannot be checked", [key.id, expires_at]),
		{"expires_at": expires_at},
	)
}

# A helper rather than an inline `not`: OPA lifts an undefined argument out of a negated call. A creation
# time after the input's now is no age either: the document contradicts itself.
age_known(key) if lib.days_since(key.created_at) >= 0

# A key explicitly marked inactive is revoked; its age and expiry no longer matter.
in_service(key) if object.get(key, "active", null) != false

expiry_message(key, days_left) := sprintf("key %s expired at the exchange on %s", [key.id, key.expires_at]) if {
	days_left <= 0
} else := sprintf("key %s expires at the exchange in %v days", [key.id, round(days_left * 10) / 10])
