# METADATA
# title: Shared inputs for the keys rule tests
# description: A compliant inventory that every keys rule leaves quiet; each test changes one fact of it.
package keyguard.keys.fixture_test

import rego.v1

now := "2026-11-25T00:00:00Z"

hosts := [
	{"name": "exec-1", "ip": "203.0.113.10", "authorized": true},
	{"name": "exec-old", "ip": "198.51.100.7", "authorized": false},
]

key := {
	"id": "bot-exec-1",
	"exchange": "binance",
	"purpose": "execution",
	"services": ["worker"],
	"permissions": {"read": true, "trade": true, "transfer": false, "withdraw": false},
	"permissions_source": "reported",
	"raw_flags": {"enableReading": true, "enableSpotAndMarginTrading": true, "enableWithdrawals": false},
	"ip_restricted": true,
	"allowed_ips": [{"value": "203.0.113.10", "reason": "exec-1 static EIP", "source": "declared"}],
	"ip_binding_source": "probed",
	"created_at": "2026-10-01T00:00:00Z",
	"expires_at": null,
	"superseded_at": null,
	"active": true,
	"inspection_error": null,
	"server_time_offset_ms": 12,
	"storage": {"backend": "aws_secretsmanager", "kms": "customer_managed", "host_locked": false},
}

monitor_key := with_fields(key, {
	"id": "mon-1",
	"purpose": "monitoring",
	"services": ["dashboard"],
	"permissions": {"read": true, "trade": false, "transfer": false, "withdraw": false},
	"raw_flags": {"enableReading": true},
})

# A keys document holding the given keys.
doc(keys) := {"kind": "keys", "now": now, "hosts": hosts, "keys": keys}

# The key with some top-level fields replaced whole (object.union would merge nested objects).
with_fields(base, fields) := object.union(object.remove(base, object.keys(fields)), fields)

# A normalised permission set with read granted.
permissions(trade, transfer, withdraw) := {"read": true, "trade": trade, "transfer": transfer, "withdraw": withdraw}
