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

test_impossible_input_clock_is_a_problem_never_the_wall_clock if {
	not lib.now_ns with input as {"now": "2026-02-30T00:00:00Z"}
	not lib.days_since("2000-01-01T00:00:00Z") with input as {"now": "2026-02-30T00:00:00Z"}
	problem := lib.clock_problem with input as {"now": "2026-02-30T00:00:00Z"}
	problem == "now is 2026-02-30T00:00:00Z, which is not a valid RFC 3339 time"
}

test_null_input_clock_is_a_problem_never_the_wall_clock if {
	not lib.now_ns with input as {"now": null}
	lib.clock_problem with input as {"now": null}
}

test_valid_or_absent_input_clock_is_no_problem if {
	not lib.clock_problem with input as {"now": "2026-11-25T00:00:00Z"}
	not lib.clock_problem with input as {}
}

test_timestamps_that_name_no_instant_are_invalid if {
	lib.invalid_time("2026-02-30T00:00:00Z")
	lib.invalid_time("2026-11-25T24:00:00Z")
	lib.invalid_time("yesterday")
	not lib.invalid_time("2026-11-25T00:00:00Z")
	not lib.invalid_time(null)
}

test_names_compare_trimmed_and_in_lower_case if {
	lib.canonical(" Monitoring ") == "monitoring"
	lib.canonical(null) == "unknown"
	lib.key_identity({"exchange": "Binance", "id": "k1"}) == lib.key_identity({"exchange": "binance ", "id": "k1"})
}

test_raw_flags_read_whatever_the_spelling_of_the_exchange if {
	lib.can({"exchange": " BINANCE ", "raw_flags": {"enableWithdrawals": true}}, "withdraw")
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

test_raw_flag_names_compare_case_insensitively if {
	lib.can({"exchange": "binance", "raw_flags": {"EnableWithdrawals": true}}, "withdraw")
	not lib.can({"exchange": "bybit", "raw_flags": {"ReadOnly": true, "Withdraw": true}}, "withdraw")
}
