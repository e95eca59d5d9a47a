package keyguard.lib_test

import rego.v1

import data.keyguard.lib

test_every_spelling_of_one_address_is_the_same_address if {
	lib.same_address("2001:DB8:0:0:0:0:0:10", "2001:db8::10")
	lib.same_address("2001:db8::10/128", "2001:db8::10")
	lib.same_address("203.0.113.75/32", "203.0.113.75")
	lib.same_address("::ffff:203.0.113.75", "203.0.113.75")
	lib.same_address(" 203.0.113.75 ", "203.0.113.75/32")
	not lib.same_address("203.0.113.0/24", "203.0.113.75")
	not lib.same_address("bogus", "bogus")
}

test_a_slash_32_or_128_is_one_address_and_a_wider_prefix_a_range if {
	lib.single_address("1.2.3.4/32")
	lib.single_address("1.2.3.4")
	lib.single_address("2001:DB8::10/128")
	not lib.single_address("1.2.3.0/24")
	not lib.single_address("1.2.3.4/24")
	not lib.single_address("2001:db8::/64")
	not lib.single_address("203.0.113.075")
	not lib.single_address(null)
}

test_the_unspecified_address_is_any_address_not_one if {
	not lib.single_address("0.0.0.0")
	not lib.single_address("::")
	lib.everywhere("0.0.0.0")
	lib.everywhere("::")
}

test_everywhere_in_every_spelling if {
	every value in ["0.0.0.0/0", "::/0", "0::/0", "0:0:0:0:0:0:0:0/0", "::ffff:0:0/96", "1.2.3.4/0", " ::/0"] {
		lib.everywhere(value)
	}
	not lib.everywhere("0.0.0.0/32")
	not lib.everywhere("10.0.0.0/8")
	not lib.everywhere("0/0")
}

test_ranges_that_together_cover_everything_are_everywhere if {
	lib.everywhere_together(["0.0.0.0/1", "128.0.0.0/1"])
	not lib.everywhere_together(["0.0.0.0/1", "10.0.0.0/8"])
}

test_canonical_cidr_is_lower_case_compressed_and_masked if {
	lib.cidr("2001:DB8:0:0:0:0:0:10") == "2001:db8::10/128"
	lib.cidr("1.2.3.4/24") == "1.2.3.0/24"
	lib.cidr("1.2.3.4") == "1.2.3.4/32"
	not lib.cidr("0/0")
}
