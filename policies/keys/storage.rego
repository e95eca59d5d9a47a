# METADATA
# title: Where API secrets are stored
# description: >-
#   A secret is only as safe as its store; only an encrypted secrets manager or a locked host's
#   environment is accepted.
package keyguard.keys.storage

import rego.v1

import data.keyguard.lib

# METADATA
# title: A secret is stored in an encrypted secrets manager or a locked host's environment
# custom:
#   id: KG-STO-101
#   severity: high
#   remediation: >-
#     Move the secret to AWS Secrets Manager encrypted with a customer-managed KMS key (or the environment
#     of a host-locked execution host).
deny contains finding if {
	some key in input.keys
	storage := secret_store(key)
	not storage.backend in data.keys.storage.critical_backends
	not accepted(storage)
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("secret of key %s is stored in %v (kms %v, host_locked %v)", [
			key.id, storage.backend,
			object.get(storage, "kms", null), object.get(storage, "host_locked", null),
		]),
		{"storage": storage},
	)
}

# METADATA
# title: A secret is never stored in plaintext, a file, a repository or an unknown place
# custom:
#   id: KG-STO-102
#   severity: critical
#   remediation: >-
#     Treat the secret as leaked - revoke the key, issue a new one and store it in AWS Secrets Manager
#     with a customer-managed KMS key.
deny contains finding if {
	some key in input.keys
	storage := secret_store(key)
	storage.backend in data.keys.storage.critical_backends
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("secret of key %s is stored in %v", [key.id, storage.backend]),
		{"storage": storage},
	)
}

# A missing storage record or backend is unknown, which is never safe.
secret_store(key) := key.storage if is_string(key.storage.backend)

else := {"backend": "unknown"}

accepted(storage) if {
	some candidate in data.keys.storage.accepted
	every field, value in candidate {
		storage[field] == value
	}
}
