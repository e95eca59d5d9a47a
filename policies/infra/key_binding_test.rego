package keyguard.infra.key_binding_test

import rego.v1

import data.keyguard.infra.key_binding

eip := {
	"type": "aws:ec2/eip:Eip", "name": "exec-ip", "id": "eipalloc-1",
	"properties": {"publicIp": "203.0.113.10", "instance": "i-1"},
}

doc(resources, bindings) := {"kind": "infra", "resources": resources, "key_bindings": bindings}

test_keys_bound_to_live_eip_pass if {
	count(key_binding.deny) == 0 with input as doc([eip], [{"key": "bot-exec-1", "ips": ["203.0.113.10"]}])
}

test_no_key_bindings_passes if {
	count(key_binding.deny) == 0 with input as {"kind": "infra", "resources": [eip]}
}

test_every_key_on_old_ip_fires if {
	bindings := [
		{"key": "bot-exec-1", "ips": ["198.51.100.20"]},
		{"key": "bot-hedge-1", "ips": ["203.0.113.10", "198.51.100.20"]},
		{"key": "monitor-1", "ips": ["203.0.113.10"]},
	]
	hit := {r.resource | some r in key_binding.deny} with input as doc([eip], bindings)
	hit == {"key/bot-exec-1", "key/bot-hedge-1"}
}

test_key_bound_to_disassociated_eip_fires if {
	loose := json.patch(eip, [{"op": "replace", "path": "/properties/instance", "value": null}])
	some r in key_binding.deny with input as doc([loose], [{"key": "bot-exec-1", "ips": ["203.0.113.10"]}])
	r.id == "KG-INF-111"
}

test_key_without_any_ip_fires if {
	some r in key_binding.deny with input as doc([eip], [{"key": "bot-exec-1", "ips": []}])
	contains(r.message, "no IP")
}

test_a_slash_32_of_the_live_eip_is_the_live_eip if {
	bindings := [{"key": "bot-exec-1", "ips": ["203.0.113.10/32", " 203.0.113.10"]}]
	count(key_binding.deny) == 0 with input as doc([eip], bindings)
}

test_ipv6_eip_in_another_spelling_is_the_live_eip if {
	v6 := object.union(eip, {"properties": {"publicIp": "2001:db8::10"}})
	bindings := [{"key": "k", "ips": ["2001:DB8:0:0:0:0:0:10", "2001:db8::10/128"]}]
	count(key_binding.deny) == 0 with input as doc([v6], bindings)
}

test_a_range_holding_the_live_eip_is_not_the_live_eip if {
	some r in key_binding.deny with input as doc([eip], [{"key": "k", "ips": ["203.0.113.0/24"]}])
	r.id == "KG-INF-111"
}

test_null_ip_list_binds_nothing if {
	some r in key_binding.deny with input as doc([eip], [{"key": "k", "ips": null}])
	contains(r.message, "bound to no IP address")
}
