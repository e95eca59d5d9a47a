# METADATA
# title: Activity on a key's account that Keyguard did not send
# description: >-
#   A correctly configured key that has been stolen looks like any other until it is used. Every order the
#   account's exchange records and no Keyguard journal sent, every withdrawal or transfer the account does not
#   expect, and every withdrawal address it does not know is a critical finding, with the exchange's records as
#   evidence. Activity that could not be read is itself a finding: unknown is never safe.
package keyguard.keys.activity

import rego.v1

import data.keyguard.lib

watched contains key if {
	some key in input.keys
	is_object(object.get(key, "activity", null))
}

# What the account expects; a missing or null expectation expects nothing, so everything seen is unexpected.
expected(key, name) := object.get(key.activity, ["expected", name], [])

# METADATA
# title: Every order on a bot account was sent by Keyguard
# custom:
#   id: KG-ACT-101
#   severity: critical
#   remediation: >-
#     Assume the key is stolen: revoke it at the exchange now (keyguard incident contain KEY does the first
#     steps), then change the account password and check where the orders came from.
deny contains finding if {
	some key in watched
	foreign := [order |
		some order in object.get(key.activity, "orders", [])
		object.get(order, "sent_by_keyguard", null) != true
	]
	count(foreign) > 0
	first := concat(" ", [foreign[0].symbol, foreign[0].side, object.get(foreign[0], "time", "?")])
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("%d order(s) on key %s's account not sent by Keyguard (first: %s)", [count(foreign), key.id, first]),
		{"foreign_orders": foreign},
	)
}

# METADATA
# title: No withdrawal the account does not expect
# custom:
#   id: KG-ACT-102
#   severity: critical
#   remediation: >-
#     Contain the key and the account now, then call the exchange's support with the withdrawal id to try
#     to freeze it; check the address book and the account's security log.
deny contains finding if {
	some key in watched
	unexpected := [w |
		some w in object.get(key.activity, "withdrawals", [])
		not w.address in expected(key, "withdrawal_addresses")
	]
	count(unexpected) > 0
	first := sprintf("%v %s to %s", [unexpected[0].amount, unexpected[0].coin, unexpected[0].address])
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("%d unexpected withdrawal(s) from key %s's account (first: %s)", [count(unexpected), key.id, first]),
		{"withdrawals": unexpected},
	)
}

# METADATA
# title: No transfer the account does not expect
# custom:
#   id: KG-ACT-103
#   severity: critical
#   remediation: >-
#     Contain the key; find where the funds went (sub-account, futures wallet) and move them back; remove
#     every transfer permission from bot keys.
deny contains finding if {
	some key in watched
	unexpected := [t |
		some t in object.get(key.activity, "transfers", [])
		not t.type in expected(key, "transfer_types")
	]
	count(unexpected) > 0
	first := sprintf("%v %s, %s", [unexpected[0].amount, unexpected[0].asset, unexpected[0].type])
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("%d unexpected transfer(s) on key %s's account (first: %s)", [count(unexpected), key.id, first]),
		{"transfers": unexpected},
	)
}

# METADATA
# title: No withdrawal address the account does not know
# custom:
#   id: KG-ACT-104
#   severity: critical
#   remediation: >-
#     Someone with access to the account added a withdrawal address: contain the key, lock the account at
#     the exchange, remove the address, and change the account's password and 2FA.
deny contains finding if {
	some key in watched
	known := expected(key, "withdrawal_addresses")
	new := [a |
		some a in object.get(key.activity, "withdrawal_addresses", [])
		not a.address in known
	]
	count(new) > 0
	first := concat(" ", [new[0].coin, new[0].address])
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("%d unknown withdrawal address(es) on key %s's account (first: %s)", [count(new), key.id, first]),
		{"withdrawal_addresses": new},
	)
}

# METADATA
# title: A watched account's activity could be read
# custom:
#   id: KG-ACT-105
#   severity: high
#   remediation: >-
#     Give the key read permission and check the exchange's history endpoints answer; until then, a stolen
#     key's orders and withdrawals would go unseen.
deny contains finding if {
	some key in watched
	error := object.get(key.activity, "error", null)
	is_string(error)
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("%s/activity", [lib.key_resource(key)]),
		sprintf("the activity of key %s's account could not be read: %s", [key.id, error]),
		{"error": error},
	)
}
