# METADATA
# title: Shared building blocks for Keyguard rules
# description: >-
#   Rule results take id, severity and remediation from the calling rule's own METADATA,
#   so a rule's catalogue entry and its findings can never disagree.
package keyguard.lib

import rego.v1

# METADATA
# title: A rule result whose id, severity and remediation come from the rule's METADATA
# description: Call as finding(rego.metadata.rule(), resource, message, evidence) inside a deny rule.
finding(meta, resource, message, evidence) := {
	"id": meta.custom.id,
	"severity": meta.custom.severity,
	"resource": resource,
	"message": message,
	"remediation": meta.custom.remediation,
	"evidence": evidence,
}

# METADATA
# title: The resource name of a key, exchange/key-id
key_resource(key) := sprintf("%s/%s", [object.get(key, "exchange", "unknown-exchange"), key.id])

# METADATA
# title: The input's clock, falling back to the wall clock only when the input gives none
now_ns := time.parse_rfc3339_ns(input.now) if input.now

else := time.now_ns()

# METADATA
# title: Nanoseconds from an RFC 3339 timestamp to the input's now; undefined if it does not parse
ns_since(timestamp) := now_ns - time.parse_rfc3339_ns(timestamp) if is_string(timestamp)

# METADATA
# title: Whole-and-fractional days from an RFC 3339 timestamp to now
days_since(timestamp) := ns_since(timestamp) / ns_per_day

ns_per_day := ((24 * 60) * 60) * 1000000000

ns_per_hour := (60 * 60) * 1000000000

ns_per_second := 1000000000
