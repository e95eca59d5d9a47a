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
# description: Flag names compare case-insensitively (EnableWithdrawals is enableWithdrawals).
raw_flags_granting(key, class) := {flag |
	not read_only_gated(key)
	some flag, value in object.get(key, "raw_flags", {})
	value == true
	some name, classes in object.get(data.lib.raw_permission_flags, canonical(object.get(key, "exchange", null)), {})
	lower(name) == lower(flag)
	class in classes
}

# Bybit lists permission groups even on a read-only key; its readOnly flag overrides them.
read_only_gated(key) if {
	gate := data.lib.read_only_gate_flags[canonical(object.get(key, "exchange", null))]
	some flag, value in object.get(key, "raw_flags", {})
	lower(flag) == lower(gate)
	value == true
}
