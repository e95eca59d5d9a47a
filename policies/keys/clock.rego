# METADATA
# title: Clock agreement between the signing host and the exchange
# description: A signed request outside the exchange's timestamp window is rejected (-1021), so skew stops trading.
package keyguard.keys.clock

import rego.v1

import data.keyguard.lib

# METADATA
# title: The host clock is within the exchange's signed-request timestamp window
# custom:
#   id: KG-ROT-106
#   severity: high
#   remediation: >-
#     Synchronise the host clock (chrony/NTP against the cloud time service) so signed calls stay inside
#     recvWindow.
deny contains finding if {
	some key in input.keys
	offset := key.server_time_offset_ms
	is_number(offset)
	outside_window(offset)
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf(
			"host clock is %d ms off the exchange for key %s (allowed %d ms ahead, %d ms behind)",
			[offset, key.id, data.keys.clock.max_ahead_ms, data.keys.clock.recv_window_ms],
		),
		{"server_time_offset_ms": offset},
	)
}

# METADATA
# title: The inventory's own time (now) is a valid RFC 3339 time
# description: >-
#   Every age, expiry and grace period is measured from now; a now that is no real time (2026-02-30) must not
#   be replaced by another clock in silence, so it is a finding and those checks cannot pass.
# custom:
#   id: KG-ROT-107
#   severity: high
#   remediation: >-
#     Set now to a real RFC 3339 UTC time (e.g. 2026-11-25T00:00:00Z); the inventory check writes it from the
#     service's clock.
deny contains finding if {
	problem := lib.clock_problem
	finding := lib.finding(
		rego.metadata.rule(),
		"now",
		sprintf("the inventory's %s, so no key's age, expiry or grace period can be checked", [problem]),
		{"now": input.now},
	)
}

# offset = local - exchange: ahead by max_ahead_ms is rejected, behind by more than recvWindow is rejected.
outside_window(offset) if offset >= data.keys.clock.max_ahead_ms

outside_window(offset) if 0 - offset > data.keys.clock.recv_window_ms
