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
# title: Who a key is, whatever the spelling of its exchange's name (binance and " Binance" are one exchange)
key_identity(key) := sprintf("%s/%s", [canonical(object.get(key, "exchange", null)), key.id])

# METADATA
# title: A name as rules compare it (purpose, exchange), trimmed and in lower case; "unknown" when it is no string
canonical(name) := lower(trim_space(name)) if is_string(name)

else := "unknown"

# METADATA
# scope: document
# title: The input's clock
# description: >-
#   The input's own now when it has one, and undefined when that is not a valid RFC 3339 time (so no rule
#   silently judges by another clock; clock_problem names the fault); the wall clock only when the input
#   gives no now at all.
now_ns := time.parse_rfc3339_ns(input.now) if clock_given

now_ns := time.now_ns() if not clock_given

clock_given if "now" in object.keys(input)

# METADATA
# title: Why the input's now cannot be used; undefined when it can (or is absent)
clock_problem := sprintf("now is %v, which is not a valid RFC 3339 time", [input.now]) if {
	clock_given
	not valid_time(input.now)
}

# METADATA
# title: A timestamp that parses as RFC 3339 and names a real instant (no February 30th, no hour 24)
valid_time(timestamp) if time.parse_rfc3339_ns(timestamp)

# METADATA
# title: A timestamp that is given (not null or absent) but does not parse; such a time can verify nothing
invalid_time(timestamp) if {
	timestamp != null
	not valid_time(timestamp)
}

# METADATA
# title: Nanoseconds from an RFC 3339 timestamp to the input's now; undefined if it does not parse
ns_since(timestamp) := now_ns - time.parse_rfc3339_ns(timestamp) if is_string(timestamp)

# METADATA
# title: Whole-and-fractional days from an RFC 3339 timestamp to now
days_since(timestamp) := ns_since(timestamp) / ns_per_day

ns_per_day := ((24 * 60) * 60) * 1000000000

ns_per_hour := (60 * 60) * 1000000000

ns_per_second := 1000000000
