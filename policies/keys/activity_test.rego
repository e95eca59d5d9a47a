package keyguard.keys.activity_test

import rego.v1

import data.keyguard.keys.activity
import data.keyguard.keys.fixture_test as fixture

watched(fields) := fixture.with_fields(fixture.key, {"activity": object.union(
	{
		"orders": [{"order_id": 1, "symbol": "BTCUSDT", "side": "BUY", "sent_by_keyguard": true}],
		"withdrawals": [],
		"transfers": [],
		"withdrawal_addresses": [{"coin": "BTC", "address": "bc1-cold"}],
		"expected": {"withdrawal_addresses": ["bc1-cold"], "transfer_types": ["MAIN_UMFUTURE"]},
		"error": null,
	},
	fields,
)})

results(keys) := found if {
	found := activity.deny with input as fixture.doc(keys)
}

ids(keys) := {finding.id | some finding in results(keys)}

test_an_account_with_only_keyguard_activity_is_quiet if {
	count(results([watched({}), fixture.key])) == 0
}

test_an_order_keyguard_did_not_send_is_critical if {
	order := {"order_id": 2, "symbol": "ETHUSDT", "side": "SELL", "time": "2026-11-24T11:00Z", "sent_by_keyguard": false}
	some finding in results([watched({"orders": [order]})])
	finding.id == "KG-ACT-101"
	finding.severity == "critical"
	finding.resource == "binance/bot-exec-1"
	finding.evidence.foreign_orders == [order]
	contains(finding.message, "ETHUSDT SELL")
}

test_a_withdrawal_to_an_unexpected_address_is_critical_and_an_expected_one_is_not if {
	stolen := {"id": "w1", "coin": "BTC", "amount": 0.5, "address": "bc1-thief"}
	planned := {"id": "w2", "coin": "BTC", "amount": 0.1, "address": "bc1-cold"}
	some finding in results([watched({"withdrawals": [planned, stolen]})])
	finding.id == "KG-ACT-102"
	finding.evidence.withdrawals == [stolen]
	ids([watched({"withdrawals": [planned]})]) == set()
}

test_an_unexpected_transfer_is_critical if {
	transfer := {"id": 7, "type": "MAIN_FUNDING", "asset": "USDT", "amount": 900}
	"KG-ACT-103" in ids([watched({"transfers": [transfer]})])
	ids([watched({"transfers": [object.union(transfer, {"type": "MAIN_UMFUTURE"})]})]) == set()
}

test_a_new_withdrawal_address_is_critical if {
	book := [{"coin": "BTC", "address": "bc1-cold"}, {"coin": "USDT", "address": "T-thief"}]
	some finding in results([watched({"withdrawal_addresses": book})])
	finding.id == "KG-ACT-104"
	finding.evidence.withdrawal_addresses == [{"coin": "USDT", "address": "T-thief"}]
}

test_activity_that_could_not_be_read_is_a_finding if {
	some finding in results([watched({"error": "HTTP 503 from the exchange"})])
	finding.id == "KG-ACT-105"
	finding.severity == "high"
	finding.resource == "binance/bot-exec-1/activity"
}

test_a_key_without_an_activity_block_is_not_watched if {
	count(results([fixture.with_fields(fixture.key, {"activity": null})])) == 0
}

test_null_expectations_expect_nothing if {
	key := watched({"expected": null, "withdrawal_addresses": [{"coin": "BTC", "address": "bc1-thief"}]})
	"KG-ACT-104" in ids([key])
}

test_an_order_of_unknown_origin_is_foreign if {
	order := {"order_id": 3, "symbol": "BTCUSDT", "side": "BUY", "sent_by_keyguard": null}
	"KG-ACT-101" in ids([watched({"orders": [order]})])
}
