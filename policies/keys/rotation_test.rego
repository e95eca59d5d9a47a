package keyguard.keys.rotation_test

import rego.v1

import data.keyguard.keys.fixture_test as fixture
import data.keyguard.keys.rotation

results(keys) := found if {
	found := rotation.deny with input as fixture.doc(keys)
}

ids(keys) := {finding.id | some finding in results(keys)}

test_young_key_is_quiet if {
	count(results([fixture.key])) == 0
}

test_key_older_than_90_days_is_high if {
	key := fixture.with_fields(fixture.key, {"created_at": "2026-08-01T00:00:00Z"})
	some finding in results([key])
	finding.id == "KG-ROT-101"
	finding.severity == "high"
	finding.message == "key bot-exec-1 is 116 days old (maximum 90)"
	not "KG-ROT-102" in ids([key])
}

test_key_between_80_and_90_days_is_a_warning if {
	key := fixture.with_fields(fixture.key, {"created_at": "2026-09-02T00:00:00Z"})
	some finding in results([key])
	finding.id == "KG-ROT-102"
	finding.severity == "medium"
	not "KG-ROT-101" in ids([key])
}

test_key_just_under_80_days_is_quiet if {
	key := fixture.with_fields(fixture.key, {"created_at": "2026-09-07T00:00:00Z"})
	count(results([key])) == 0
}

test_revoked_old_key_is_quiet if {
	key := fixture.with_fields(fixture.key, {"created_at": "2025-01-01T00:00:00Z", "active": false})
	count(results([key])) == 0
}

test_unknown_creation_time_is_medium if {
	missing := object.remove(fixture.key, ["created_at"])
	garbled := fixture.with_fields(fixture.key, {"id": "bot-2", "created_at": "last tuesday"})
	unknown := {finding.resource | some finding in results([missing, garbled]); finding.id == "KG-ROT-103"}
	unknown == {"binance/bot-exec-1", "binance/bot-2"}
}

test_superseded_key_active_after_24_hours_is_high if {
	key := fixture.with_fields(fixture.key, {"superseded_at": "2026-11-23T12:00:00Z"})
	some finding in results([key])
	finding.id == "KG-ROT-104"
	finding.severity == "high"
	finding.message == "key bot-exec-1 is still active 36 hours after its replacement was created (grace 24 hours)"
}

test_superseded_key_within_grace_or_revoked_is_quiet if {
	fresh := fixture.with_fields(fixture.key, {"superseded_at": "2026-11-24T06:00:00Z"})
	revoked := fixture.with_fields(fixture.key, {"id": "old", "superseded_at": "2026-11-01T00:00:00Z", "active": false})
	count(results([fresh, revoked])) == 0
}

test_expiry_within_7_days_is_medium if {
	key := fixture.with_fields(fixture.key, {"expires_at": "2026-11-28T12:00:00Z"})
	some finding in results([key])
	finding.id == "KG-ROT-105"
	finding.severity == "medium"
	finding.message == "key bot-exec-1 expires at the exchange in 3.5 days"
}

test_already_expired_key_is_reported_as_expired if {
	key := fixture.with_fields(fixture.key, {"expires_at": "2026-11-20T00:00:00Z"})
	some finding in results([key])
	finding.id == "KG-ROT-105"
	finding.message == "key bot-exec-1 expired at the exchange on 2026-11-20T00:00:00Z"
}

test_expiry_in_whole_days_reads_plainly if {
	key := fixture.with_fields(fixture.key, {"expires_at": "2026-11-29T00:00:00Z"})
	some finding in results([key])
	finding.message == "key bot-exec-1 expires at the exchange in 4 days"
}

test_expiry_beyond_7_days_is_quiet if {
	key := fixture.with_fields(fixture.key, {"expires_at": "2026-12-10T00:00:00Z"})
	count(results([key])) == 0
}

test_expiry_in_exactly_7_days_is_within_7_days if {
	some finding in results([fixture.with_fields(fixture.key, {"expires_at": "2026-12-02T00:00:00Z"})])
	finding.id == "KG-ROT-105"
	finding.message == "key bot-exec-1 expires at the exchange in 7 days"
}

test_impossible_expiry_time_is_medium if {
	some finding in results([fixture.with_fields(fixture.key, {"expires_at": "2026-02-30T00:00:00Z"})])
	finding.id == "KG-ROT-105"
	contains(finding.message, "not a valid time")
}

test_impossible_supersession_time_is_high if {
	some finding in results([fixture.with_fields(fixture.key, {"superseded_at": "2026-11-31T00:00:00Z"})])
	finding.id == "KG-ROT-104"
	contains(finding.message, "grace period cannot be checked")
}

test_creation_after_now_is_no_known_age if {
	"KG-ROT-103" in ids([fixture.with_fields(fixture.key, {"created_at": "2027-01-01T00:00:00Z"})])
}

test_impossible_now_is_never_replaced_by_the_wall_clock if {
	old := fixture.with_fields(fixture.key, {"created_at": "2000-01-01T00:00:00Z"})
	found := {f.id | some f in rotation.deny} with input as {"kind": "keys", "now": "2026-02-30T00:00:00Z", "keys": [old]}
	not "KG-ROT-101" in found
	"KG-ROT-103" in found
}
