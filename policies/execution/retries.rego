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
	retry := config_value(["order_retry"])
	missing := {name |
		some name in ["client_order_ids", "status_lookup"]
		config_value(["order_retry", name]) != true
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
	attempts := config_value(["data_retry", "attempts"])
	not bounded_attempts(attempts)
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("data retries are %v attempts, outside %d-%d", [
			attempts, data.execution.retries.data_min_attempts,
			data.execution.retries.data_max_attempts,
		]),
		{"data_retry": config_value(["data_retry"])},
	)
}

# METADATA
# title: Data retries back off exponentially with jitter
# custom:
#   id: KG-EXE-110
#   severity: medium
#   remediation: Set config.data_retry.backoff to exponential and config.data_retry.jitter to true.
deny contains finding if {
	not spread_out
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("data retries use backoff %v with jitter %v, not exponential with jitter", [
			config_value(["data_retry", "backoff"]),
			config_value(["data_retry", "jitter"]),
		]),
		{"data_retry": config_value(["data_retry"])},
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
	backoff := config_value(["reconnect", "backoff"])
	not backoff in data.execution.retries.accepted_backoff
	finding := lib.finding(
		rego.metadata.rule(),
		worker,
		sprintf("reconnects of worker %s have no backoff (backoff is %v)", [worker, backoff]),
		{"reconnect": config_value(["reconnect"])},
	)
}

worker := object.get(input, "worker", "unknown-worker")

bounded_attempts(attempts) if {
	is_number(attempts)
	attempts >= data.execution.retries.data_min_attempts
	attempts <= data.execution.retries.data_max_attempts
}

spread_out if {
	config_value(["data_retry", "backoff"]) in data.execution.retries.accepted_backoff
	config_value(["data_retry", "jitter"]) == true
}

# A config field by path; a missing or null object on the way reads as the field missing (null), never as an error
# that would leave the rule undefined and quiet.
config_value(path) := object.get(input, array.concat(["config"], path), null)
