package keyguard.keys.ip_allowlist_test

import rego.v1

import data.keyguard.keys.fixture_test as fixture
import data.keyguard.keys.ip_allowlist

results(keys) := found if {
	found := ip_allowlist.deny with input as fixture.doc(keys)
}

ids(keys) := {finding.id | some finding in results(keys)}

with_ips(values) := fixture.with_fields(fixture.key, {"allowed_ips": [
{"value": value, "reason": "test host"} |
	some value in values
]})

test_restricted_key_bound_to_an_authorized_host_is_quiet if {
	count(results([fixture.key])) == 0
}

test_key_not_ip_restricted_is_critical if {
	key := fixture.with_fields(fixture.key, {"ip_restricted": false})
	some finding in results([key])
	finding.id == "KG-IP-101"
	finding.severity == "critical"
	finding.resource == "binance/bot-exec-1"
}

test_unknown_ip_restriction_is_critical if {
	key := fixture.with_fields(fixture.key, {"ip_restricted": null})
	some finding in results([key])
	finding.id == "KG-IP-101"
	finding.message == "key bot-exec-1 is not IP-restricted (ip_restricted is null)"
}

test_missing_ip_restriction_is_critical if {
	"KG-IP-101" in ids([object.remove(fixture.key, ["ip_restricted"])])
}

test_cidr_range_and_wildcard_entries_are_high if {
	key := with_ips(["203.0.113.0/24", "203.0.113.*", "0.0.0.0/0", "2001:db8::/64", "not-an-ip"])
	ranges := {finding.evidence.allowed_ip.value | some finding in results([key]); finding.id == "KG-IP-102"}
	ranges == {"203.0.113.0/24", "203.0.113.*", "0.0.0.0/0", "2001:db8::/64", "not-an-ip"}
	some finding in results([key])
	finding.id == "KG-IP-102"
	finding.severity == "high"
}

test_full_length_prefixes_are_single_addresses if {
	hosts := [
		{"name": "v6", "ip": "2001:db8::10", "authorized": true},
		{"name": "exec-1", "ip": "203.0.113.10", "authorized": true},
	]
	key := with_ips(["203.0.113.10/32", "2001:db8::10/128", "2001:db8::10"])
	found := ip_allowlist.deny with input as {"kind": "keys", "now": fixture.now, "hosts": hosts, "keys": [key]}
	count(found) == 0
}

test_address_no_authorized_host_owns_is_high if {
	key := with_ips(["203.0.113.10", "198.51.100.7"])
	stale := [finding | some finding in results([key]); finding.id == "KG-IP-103"]
	count(stale) == 1
	stale[0].severity == "high"
	stale[0].resource == "binance/bot-exec-1/ip/198.51.100.7"
	stale[0].evidence.authorized_ips == ["203.0.113.10"]
}

test_every_address_is_stale_when_no_host_is_known if {
	found := ip_allowlist.deny with input as {"kind": "keys", "now": fixture.now, "keys": [fixture.key]}
	{finding.id | some finding in found} == {"KG-IP-103"}
}

test_allowed_address_without_reason_is_low if {
	key := fixture.with_fields(fixture.key, {"allowed_ips": [
		{"value": "203.0.113.10", "reason": "  "},
		{"value": "203.0.113.10/32"},
	]})
	undocumented := [finding | some finding in results([key]); finding.id == "KG-IP-104"]
	count(undocumented) == 2
	every finding in undocumented {
		finding.severity == "low"
	}
}

test_binding_only_declared_or_flagged_is_medium if {
	declared := fixture.with_fields(fixture.key, {"ip_binding_source": "declared"})
	flagged := fixture.with_fields(fixture.key, {"id": "bot-2", "ip_binding_source": "flagged"})
	unset := object.remove(fixture.with_fields(fixture.key, {"id": "bot-3"}), ["ip_binding_source"])
	unverified := {finding.resource | some finding in results([declared, flagged, unset]); finding.id == "KG-IP-105"}
	unverified == {"binance/bot-exec-1", "binance/bot-2", "binance/bot-3"}
	some finding in results([declared])
	finding.severity == "medium"
}

test_binding_reported_by_the_exchange_is_verified if {
	key := fixture.with_fields(fixture.key, {"ip_binding_source": "reported"})
	not "KG-IP-105" in ids([key])
}

test_restricted_key_with_no_allowed_address_is_critical if {
	every allowlist in [[], null] {
		some finding in results([fixture.with_fields(fixture.key, {"allowed_ips": allowlist})])
		finding.id == "KG-IP-101"
		contains(finding.message, "lists no allowed address")
	}
	"KG-IP-101" in ids([object.remove(fixture.key, ["allowed_ips"])])
}

test_an_address_in_any_spelling_is_one_authorized_address if {
	hosts := [
		{"name": "exec-6", "ip": "2001:db8::10", "authorized": true},
		{"name": "exec-1", "ip": "203.0.113.10/32", "authorized": true},
	]
	key := with_ips(["2001:DB8:0:0:0:0:0:10", "203.0.113.10", "::ffff:203.0.113.10"])
	found := ip_allowlist.deny with input as {"kind": "keys", "now": fixture.now, "hosts": hosts, "keys": [key]}
	count(found) == 0
}

test_the_unspecified_address_is_not_one_address if {
	some finding in results([with_ips(["0.0.0.0"])])
	finding.id == "KG-IP-102"
}
