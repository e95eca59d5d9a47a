package keyguard.keys.storage_test

import rego.v1

import data.keyguard.keys.fixture_test as fixture
import data.keyguard.keys.storage

results(keys) := found if {
	found := storage.deny with input as fixture.doc(keys)
}

stored(place) := fixture.with_fields(fixture.key, {"storage": place})

test_secrets_manager_with_customer_kms_is_quiet if {
	count(results([fixture.key])) == 0
}

test_environment_on_locked_host_is_quiet if {
	count(results([stored({"backend": "env", "host_locked": true})])) == 0
}

test_secrets_manager_with_aws_managed_kms_is_high if {
	some finding in results([stored({"backend": "aws_secretsmanager", "kms": "aws_managed"})])
	finding.id == "KG-STO-101"
	finding.severity == "high"
	finding.message == "secret of key bot-exec-1 is stored in aws_secretsmanager (kms aws_managed, host_locked null)"
}

test_environment_on_unlocked_host_is_high if {
	some finding in results([stored({"backend": "env", "host_locked": false})])
	finding.id == "KG-STO-101"
}

test_plaintext_file_repository_are_critical if {
	keys := [fixture.with_fields(fixture.key, {"id": backend, "storage": {"backend": backend}}) |
		some backend in ["plaintext", "file", "repository"]
	]
	critical := {finding.resource |
		some finding in results(keys)
		finding.id == "KG-STO-102"
		finding.severity == "critical"
	}
	critical == {"binance/plaintext", "binance/file", "binance/repository"}
}

test_unknown_or_missing_storage_is_critical if {
	keys := [
		stored({"backend": "unknown"}),
		fixture.with_fields(stored({"backend": null}), {"id": "null-backend"}),
		object.remove(fixture.with_fields(fixture.key, {"id": "no-storage"}), ["storage"]),
	]
	critical := {finding.resource | some finding in results(keys); finding.id == "KG-STO-102"}
	critical == {"binance/bot-exec-1", "binance/null-backend", "binance/no-storage"}
	not "KG-STO-101" in {finding.id | some finding in results(keys)}
}
