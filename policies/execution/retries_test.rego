package keyguard.execution.retries_test

import rego.v1

import data.keyguard.execution.fixture_test as fixture
import data.keyguard.execution.retries

results(doc) := found if {
	found := retries.deny with input as doc
}

ids(doc) := {finding.id | some finding in results(doc)}

test_disciplined_retries_are_quiet if {
	count(results(fixture.doc)) == 0
}

test_order_retry_without_client_ids_is_high if {
	some finding in results(fixture.with_config({"order_retry": {"client_order_ids": false, "status_lookup": true}}))
	finding.id == "KG-EXE-108"
	finding.severity == "high"
	finding.message == "order retries of worker worker-1 lack client_order_ids, so a retry can duplicate an order"
}

test_order_retry_without_status_lookup_is_high if {
	some finding in results(fixture.without_config(["order_retry"]))
	finding.id == "KG-EXE-108"
	contains(finding.message, "client_order_ids and status_lookup")
}

test_data_retry_attempts_outside_3_to_5_are_medium if {
	some finding in results(fixture.with_config({"data_retry": {"attempts": 8, "backoff": "exponential", "jitter": true}}))
	finding.id == "KG-EXE-109"
	finding.severity == "medium"
	"KG-EXE-109" in ids(fixture.with_config({"data_retry": {"attempts": 2, "backoff": "exponential", "jitter": true}}))
}

test_data_retry_attempts_at_the_bounds_are_quiet if {
	count(results(fixture.with_config({"data_retry": {"attempts": 3, "backoff": "exponential", "jitter": true}}))) == 0
	count(results(fixture.with_config({"data_retry": {"attempts": 5, "backoff": "exponential", "jitter": true}}))) == 0
}

test_data_retry_without_exponential_backoff_or_jitter_is_medium if {
	some finding in results(fixture.with_config({"data_retry": {"attempts": 4, "backoff": "fixed", "jitter": true}}))
	finding.id == "KG-EXE-110"
	finding.severity == "medium"
	"KG-EXE-110" in ids(fixture.with_config({"data_retry": {"attempts": 4, "backoff": "exponential", "jitter": false}}))
}

test_reconnect_without_backoff_is_medium if {
	some finding in results(fixture.with_config({"reconnect": {"backoff": "none"}}))
	finding.id == "KG-EXE-111"
	finding.severity == "medium"
	"KG-EXE-111" in ids(fixture.without_config(["reconnect"]))
}

test_null_order_retry_is_no_retry_discipline if {
	some finding in results(fixture.with_config({"order_retry": null}))
	finding.id == "KG-EXE-108"
	contains(finding.message, "client_order_ids and status_lookup")
}

test_null_data_retry_and_reconnect_are_no_backoff if {
	found := ids(fixture.with_config({"data_retry": null, "reconnect": null}))
	{"KG-EXE-109", "KG-EXE-110", "KG-EXE-111"} == found
}
