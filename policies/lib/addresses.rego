package keyguard.lib

import rego.v1

# METADATA
# title: The canonical CIDR of an IP address or CIDR, undefined when the value is neither
# description: >-
#   One spelling per network, so every rule compares addresses the same way: a bare address is its /32 or
#   /128, IPv6 is lower case and compressed (2001:DB8:0:0:0:0:0:10 is 2001:db8::10/128), an IPv4-mapped IPv6
#   address or range is its IPv4 form (::ffff:0:0/96 is 0.0.0.0/0), and host bits are cleared
#   (1.2.3.4/24 is 1.2.3.0/24).
cidr(value) := canonical if {
	is_string(value)
	some canonical in net.cidr_merge([with_prefix(trim_space(value))])
}

# net.cidr_merge reads a bare IPv4 address as a classful network (1.2.3.4 as 1.0.0.0/8), so it gets its full length.
with_prefix(text) := text if contains(text, "/")

else := sprintf("%s/%d", [text, data.lib.address_bits.ipv6]) if contains(text, ":")

else := sprintf("%s/%d", [text, data.lib.address_bits.ipv4])

# METADATA
# title: The prefix length of a canonical CIDR
prefix_length(canonical) := to_number(split(canonical, "/")[1])

# METADATA
# title: The value is exactly one address (a bare address, a /32 or a /128, in any spelling)
# description: The unspecified address (0.0.0.0, ::) is not one address but "any", so it is not single.
single_address(value) if {
	canonical := cidr(value)
	prefix_length(canonical) == full_length(canonical)
	not everywhere(value)
}

full_length(canonical) := data.lib.address_bits.ipv6 if contains(canonical, ":")

else := data.lib.address_bits.ipv4

# METADATA
# title: Two values name the same address or network, whatever their spelling
same_address(a, b) if cidr(a) == cidr(b)

# METADATA
# scope: document
# title: The value admits every address of a family (0.0.0.0/0, ::/0, 0::/0, ::ffff:0:0/96, 1.2.3.4/0, ...)
# description: >-
#   Also the unspecified address written bare (0.0.0.0, ::), which tools read as "any address".
everywhere(value) if prefix_length(cidr(value)) == 0

everywhere(value) if {
	not contains(value, "/")
	cidr(value) in data.lib.unspecified_address_cidrs
}

# METADATA
# title: Several values together admit every address of a family (0.0.0.0/1 and 128.0.0.0/1)
everywhere_together(values) if {
	some canonical in net.cidr_merge([cidr(v) | some v in values])
	prefix_length(canonical) == 0
}
