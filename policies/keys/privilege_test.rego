package keyguard.keys.privilege_test

import rego.v1

import data.keyguard.keys.fixture_test as fixture
import data.keyguard.keys.privilege

results(keys) := found if {
	found := privilege.deny with input as fixture.doc(keys)
}

ids(keys) := {finding.id | some finding in results(keys)}

test_compliant_bot_and_monitoring_keys_are_quiet if {
	count(results([fixture.key, fixture.monitor_key])) == 0
}

test_bot_key_with_withdraw_is_critical if {
	key := fixture.with_fields(fixture.key, {"permissions": fixture.permissions(true, false, true)})
	some finding in results([key])
	finding.id == "KG-KEY-101"
	finding.severity == "critical"
	finding.resource == "binance/bot-exec-1"
	finding.remediation != ""
	finding.evidence.permissions.withdraw == true
}

test_raw_withdraw_flag_outranks_a_normalised_false if {
	key := fixture.with_fields(fixture.key, {"raw_flags": {"enableWithdrawals": true}})
	some finding in results([key])
	finding.id == "KG-KEY-101"
	finding.evidence.raw_flags == {"enableWithdrawals"}
}

test_unknown_purpose_is_treated_as_a_bot if {
	key := fixture.with_fields(fixture.key, {
		"purpose": "vendor:3commas",
		"permissions": fixture.permissions(true, false, true),
	})
	"KG-KEY-101" in ids([key])
}

test_hedging_bot_with_universal_transfer_is_critical if {
	key := fixture.with_fields(fixture.key, {"purpose": "hedging", "raw_flags": {"permitsUniversalTransfer": true}})
	some finding in results([key])
	finding.id == "KG-KEY-102"
	finding.severity == "critical"
	finding.evidence.raw_flags == {"permitsUniversalTransfer"}
}

test_bot_with_internal_or_subaccount_transfer_is_critical if {
	internal_transfer := fixture.with_fields(fixture.key, {"raw_flags": {"enableInternalTransfer": true}})
	bybit := fixture.with_fields(fixture.key, {
		"id": "bb-1", "exchange": "bybit",
		"raw_flags": {"SubMemberTransfer": true},
	})
	normalised := fixture.with_fields(fixture.key, {"id": "n-1", "permissions": fixture.permissions(true, true, false)})
	found := results([internal_transfer, bybit, normalised])
	flagged := {finding.resource | some finding in found; finding.id == "KG-KEY-102"}
	flagged == {"binance/bot-exec-1", "bybit/bb-1", "binance/n-1"}
}

test_okx_trade_permission_counts_as_transfer if {
	key := fixture.with_fields(fixture.key, {"exchange": "okx", "raw_flags": {"trade": true}})
	"KG-KEY-102" in ids([key])
}

test_bot_without_transfer_is_quiet if {
	not "KG-KEY-102" in ids([fixture.key])
}

test_monitoring_key_that_can_trade_is_high if {
	key := fixture.with_fields(fixture.monitor_key, {"permissions": fixture.permissions(true, false, false)})
	some finding in results([key])
	finding.id == "KG-KEY-103"
	finding.severity == "high"
	finding.resource == "binance/mon-1"
}

test_portfolio_key_with_trade_flag_is_high if {
	key := fixture.with_fields(fixture.monitor_key, {
		"purpose": "portfolio",
		"raw_flags": {"enableSpotAndMarginTrading": true},
	})
	"KG-KEY-103" in ids([key])
}

test_bot_key_that_trades_is_not_a_read_only_violation if {
	not "KG-KEY-103" in ids([fixture.key])
}

test_monitoring_key_that_can_withdraw_is_critical if {
	key := fixture.with_fields(fixture.monitor_key, {"permissions": fixture.permissions(false, true, true)})
	some finding in results([key])
	finding.id == "KG-KEY-104"
	finding.severity == "critical"
	finding.message == "monitoring key mon-1 can transfer and withdraw"
}

test_read_only_monitoring_key_is_quiet if {
	count(results([fixture.monitor_key])) == 0
}

test_key_used_by_two_services_is_high if {
	key := fixture.with_fields(fixture.key, {"services": ["worker", "hedger"]})
	some finding in results([key])
	finding.id == "KG-KEY-105"
	finding.severity == "high"
	finding.evidence.services == ["hedger", "worker"]
}

test_same_key_id_under_two_purposes_is_high if {
	hedge := fixture.with_fields(fixture.key, {"purpose": "hedging"})
	some finding in results([fixture.key, hedge])
	finding.id == "KG-KEY-105"
	finding.evidence.purposes == ["execution", "hedging"]
}

test_same_key_id_on_two_exchanges_is_two_keys if {
	other := fixture.with_fields(fixture.key, {"exchange": "okx", "purpose": "hedging", "services": ["hedger"]})
	not "KG-KEY-105" in ids([fixture.key, other])
}

test_unreadable_permissions_are_high if {
	key := fixture.with_fields(fixture.key, {"permissions": fixture.permissions(null, null, null)})
	some finding in results([key])
	finding.id == "KG-KEY-106"
	finding.severity == "high"
	finding.message == concat("", [
		"permissions of key bot-exec-1 are unknown: ",
		"trade not readable; transfer not readable; withdraw not readable",
	])
}

test_unknown_permission_source_is_a_finding if {
	key := fixture.with_fields(fixture.key, {"permissions_source": "unknown"})
	"KG-KEY-106" in ids([key])
}

test_inspection_error_is_a_finding if {
	key := fixture.with_fields(fixture.key, {"inspection_error": "timeout talking to exchange"})
	some finding in results([key])
	finding.id == "KG-KEY-106"
	contains(finding.message, "inspection failed: timeout talking to exchange")
}

test_missing_permissions_are_a_finding if {
	key := object.remove(fixture.key, ["permissions"])
	some finding in results([key])
	finding.id == "KG-KEY-106"
	contains(finding.message, "no permissions recorded")
}

test_declared_permissions_are_readable if {
	key := fixture.with_fields(fixture.key, {"permissions_source": "declared"})
	not "KG-KEY-106" in ids([key])
}

test_key_without_a_purpose_is_treated_as_a_bot if {
	withdrawing := fixture.with_fields(fixture.key, {"permissions": fixture.permissions(true, false, true)})
	key := object.remove(withdrawing, ["purpose"])
	some finding in results([key])
	finding.id == "KG-KEY-101"
	finding.message == "bot key bot-exec-1 (purpose unknown) can withdraw"
}

test_purpose_in_other_case_or_with_spaces_is_still_read_only if {
	for_trade := fixture.with_fields(fixture.monitor_key, {"permissions": fixture.permissions(true, false, false)})
	"KG-KEY-103" in ids([fixture.with_fields(for_trade, {"purpose": "Monitoring"})])
	"KG-KEY-103" in ids([fixture.with_fields(for_trade, {"purpose": " portfolio "})])
	not "KG-KEY-101" in ids([fixture.with_fields(fixture.monitor_key, {"purpose": "MONITORING"})])
}

test_one_key_under_two_spellings_of_its_exchange_is_one_key if {
	as_monitor := fixture.with_fields(fixture.key, {"exchange": "Binance", "purpose": "monitoring"})
	some finding in results([fixture.key, as_monitor])
	finding.id == "KG-KEY-105"
	finding.evidence.purposes == ["execution", "monitoring"]
}

test_one_service_in_two_spellings_is_one_service if {
	again := fixture.with_fields(fixture.key, {"exchange": "BINANCE", "purpose": "Execution", "services": ["Worker "]})
	not "KG-KEY-105" in ids([fixture.key, again])
}
