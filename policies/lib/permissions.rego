package keyguard.lib

import rego.v1

# METADATA
# scope: document
# title: The key holds a permission class (read, trade, transfer, withdraw)
# description: >-
#   True when the normalised permission is true, or when any raw exchange flag that maps to the
#   class (data.lib.raw_permission_flags) is set; a raw flag outranks a normalised false, except on a
#   key whose exchange-wide read-only flag (data.lib.read_only_gate_flags, e.g. Bybit readOnly) is set.
can(key, class) if key.permissions[class] == true

can(key, class) if count(raw_flags_granting(key, class)) > 0

# METADATA
# title: The raw exchange flags that grant a permission class and are set on the key
raw_flags_granting(key, class) := {flag |
	not read_only_gated(key)
	some flag, value in object.get(key, "raw_flags", {})
	value == true
	class in object.get(data.lib.raw_permission_flags, [lower(object.get(key, "exchange", "")), flag], [])
}

# Bybit lists permission groups even on a read-only key; its readOnly flag overrides them.
read_only_gated(key) if {
	gate := data.lib.read_only_gate_flags[lower(object.get(key, "exchange", ""))]
	key.raw_flags[gate] == true
}
