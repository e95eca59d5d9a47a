package keyguard.lib_test

import rego.v1

import data.keyguard.lib

test_finding_takes_id_severity_and_remediation_from_metadata if {
	meta := {"title": "t", "custom": {"id": "KG-KEY-999", "severity": "low", "remediation": "fix it"}}
	lib.finding(meta, "binance/k", "msg", {"a": 1}) == {
		"id": "KG-KEY-999",
		"severity": "low",
		"resource": "binance/k",
		"message": "msg",
		"remediation": "fix it",
		"evidence": {"a": 1},
	}
}

test_finding_without_metadata_id_is_undefined_so_the_rule_cannot_fire_unlabelled if {
	not lib.finding({"title": "no custom block"}, "r", "m", {})
}

test_days_are_counted_from_the_input_clock if {
	days := lib.days_since("2026-11-20T12:00:00Z") with input as {"now": "2026-11-25T00:00:00Z"}
	days == 4.5
}

test_missing_input_clock_falls_back_to_the_wall_clock if {
	days := lib.days_since("2000-01-01T00:00:00Z") with input as {}
	days > 9000
}

test_unparseable_timestamp_has_no_age if {
	not lib.days_since("yesterday") with input as {"now": "2026-11-25T00:00:00Z"}
	not lib.days_since(null) with input as {"now": "2026-11-25T00:00:00Z"}
}

test_raw_flag_grants_its_class_on_its_exchange_only if {
	key := {"exchange": "Binance", "permissions": {"withdraw": false}, "raw_flags": {"enableWithdrawals": true}}
	lib.can(key, "withdraw")
	lib.raw_flags_granting(key, "withdraw") == {"enableWithdrawals"}
	not lib.can({"exchange": "kraken", "raw_flags": {"enableWithdrawals": true}}, "withdraw")
}

test_bybit_read_only_flag_overrides_its_permission_groups if {
	read_only := {"exchange": "bybit", "raw_flags": {"readOnly": true, "Spot": true, "Withdraw": true}}
	not lib.can(read_only, "trade")
	not lib.can(read_only, "withdraw")
	lib.can({"exchange": "bybit", "raw_flags": {"readOnly": false, "Withdraw": true}}, "withdraw")
}

test_key_resource_names_exchange_and_id if {
	lib.key_resource({"exchange": "okx", "id": "k1"}) == "okx/k1"
	lib.key_resource({"id": "k1"}) == "unknown-exchange/k1"
}
