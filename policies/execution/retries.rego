# METADATA
# title: Retry discipline of the execution worker
# description: >-
#   A retried order must never become a second order, data retries must be bounded and spread out,
#   and reconnects must back off so an outage does not become a ban.
package keyguard.execution.retries

import rego.v1

import data.keyguard.lib

# METADATA
# title: Order retries use client order ids and look the order up before resending
# custom:
#   id: KG-EXE-108
#   severity: high
#   remediation: >-
#     Mint a client order id once per intent and, on a timeout or 5xx, look the order up by that id
#     instead of resending.
deny contains finding if {
	retry := object.get(input, ["config", "order_retry"], {})
	missing := {name |
		some name in ["client_order_ids", "status_lookup"]
		object.get(retry, name, null) != true
	}
	count(missing) > 0
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf(
			"order retries of worker %s lack %s, so a retry can duplicate an order",
			[worker, concat(" and ", sort(missing))],
		),
		{"order_retry": retry},
	)
}

# METADATA
# title: Data requests are retried 3 to 5 times
# custom:
#   id: KG-EXE-109
#   severity: medium
#   remediation: Set config.data_retry.attempts between 3 and 5.
deny contains finding if {
	attempts := object.get(input, ["config", "data_retry", "attempts"], null)
	not bounded_attempts(attempts)
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("data retries are %v attempts, outside %d-%d", [
			attempts, data.execution.retries.data_min_attempts,
			data.execution.retries.data_max_attempts,
		]),
		{"data_retry": object.get(input, ["config", "data_retry"], null)},
	)
}

# METADATA
# title: Data retries back off exponentially with jitter
# custom:
#   id: KG-EXE-110
#   severity: medium
#   remediation: Set config.data_retry.backoff to exponential and config.data_retry.jitter to true.
deny contains finding if {
	retry := object.get(input, ["config", "data_retry"], {})
	not spread_out(retry)
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("data retries use backoff %v with jitter %v, not exponential with jitter", [
			object.get(retry, "backoff", null),
			object.get(retry, "jitter", null),
		]),
		{"data_retry": retry},
	)
}

# METADATA
# title: Reconnects back off exponentially
# custom:
#   id: KG-EXE-111
#   severity: medium
#   remediation: >-
#     Set config.reconnect.backoff to exponential with a max_delay_s so a lost connection does not hammer
#     the exchange.
deny contains finding if {
	reconnect := object.get(input, ["config", "reconnect"], {})
	not object.get(reconnect, "backoff", null) in data.execution.retries.accepted_backoff
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("reconnects of worker %s have no backoff (backoff is %v)", [worker, object.get(reconnect, "backoff", null)]),
		{"reconnect": reconnect},
	)
}

worker := object.get(input, "worker", "unknown-worker")

bounded_attempts(attempts) if {
	is_number(attempts)
	attempts >= data.execution.retries.data_min_attempts
	attempts <= data.execution.retries.data_max_attempts
}

spread_out(retry) if {
	retry.backoff in data.execution.retries.accepted_backoff
	retry.jitter == true
}
