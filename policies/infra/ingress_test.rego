package keyguard.infra.ingress_test

import rego.v1

import data.keyguard.infra.ingress

sg(ingress_rules) := {
	"type": "aws:ec2/securityGroup:SecurityGroup", "name": "exec-sg", "id": "sg-1",
	"properties": {"ingress": ingress_rules},
}

ids(resources) := found if {
	found := {r.id | some r in ingress.deny} with input as {"kind": "infra", "resources": resources}
}

test_group_without_ingress_passes if {
	count(ingress.deny) == 0 with input as {"kind": "infra", "resources": [sg([])]}
}

test_null_ingress_passes if {
	count(ingress.deny) == 0 with input as {"kind": "infra", "resources": [sg(null)]}
}

test_inline_https_from_world_fires if {
	ids([sg([{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}])]) == {"KG-INF-102"}
}

test_inline_all_protocols_from_ipv6_world_fires if {
	ids([sg([{"protocol": "-1", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]}])]) == {"KG-INF-102"}
}

test_inline_from_private_range_passes if {
	ids([sg([{"protocol": "tcp", "fromPort": 8181, "toPort": 8181, "cidrBlocks": ["10.0.0.0/16"]}])]) == set()
}

test_security_group_rule_from_world_fires if {
	rule := {
		"type": "aws:ec2/securityGroupRule:SecurityGroupRule", "name": "open", "id": "sgr-1",
		"properties": {
			"type": "ingress", "protocol": "tcp", "fromPort": 1000, "toPort": 2000,
			"cidrBlocks": ["0.0.0.0/0"], "securityGroupId": "sg-1",
		},
	}
	some r in ingress.deny with input as {"kind": "infra", "resources": [rule]}
	r.resource == "SecurityGroupRule/open"
}

test_security_group_egress_rule_to_world_passes if {
	rule := {
		"type": "aws:ec2/securityGroupRule:SecurityGroupRule", "name": "https-out", "id": "sgr-2",
		"properties": {
			"type": "egress", "protocol": "tcp", "fromPort": 443, "toPort": 443,
			"cidrBlocks": ["0.0.0.0/0"], "securityGroupId": "sg-1",
		},
	}
	ids([rule]) == set()
}

test_vpc_ingress_rule_from_world_fires if {
	rule := {
		"type": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "name": "all-in", "id": "sgr-3",
		"properties": {"ipProtocol": "-1", "cidrIpv4": "0.0.0.0/0", "securityGroupId": "sg-1"},
	}
	ids([rule]) == {"KG-INF-102"}
}

test_unreadable_group_is_not_judged_here if {
	unreadable := object.union(sg([{"protocol": "-1", "cidrBlocks": ["0.0.0.0/0"]}]), {"error": "AccessDenied"})
	ids([unreadable]) == set()
}

test_everywhere_in_other_spellings_fires if {
	every cidr in ["0::/0", "0:0:0:0:0:0:0:0/0", "::ffff:0:0/96", "1.2.3.4/0", " 0.0.0.0/0", "0.0.0.0"] {
		ids([sg([{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": [cidr]}])]) == {"KG-INF-102"}
	}
}

test_ranges_that_add_up_to_everywhere_fire if {
	some r in ingress.deny with input as {"kind": "infra", "resources": [sg([{
		"protocol": "tcp", "fromPort": 443, "toPort": 443,
		"cidrBlocks": ["0.0.0.0/1", "128.0.0.0/1"],
	}])]}
	contains(r.message, "everywhere (0.0.0.0/1, 128.0.0.0/1 together)")
}

test_source_that_is_no_cidr_fires_as_unknown if {
	some r in ingress.deny with input as {"kind": "infra", "resources": [sg([{"protocol": "-1", "cidrBlocks": ["0/0"]}])]}
	contains(r.message, "not a valid CIDR")
}

test_default_security_group_ingress_counts_as_open if {
	default_sg := {
		"type": "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "name": "default", "id": "sg-default",
		"properties": {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": true}]},
	}
	ids([default_sg]) == {"KG-INF-102"}
	live_default := object.union(sg([{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/8"]}]), {
		"name": "default",
		"properties": {"name": "default"},
	})
	ids([live_default]) == {"KG-INF-102"}
	rule_into_default := {
		"type": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "name": "into-default", "id": "sgr-9",
		"properties": {
			"ipProtocol": "tcp", "fromPort": 443, "toPort": 443,
			"cidrIpv4": "10.0.0.0/8", "securityGroupId": "sg-default",
		},
	}
	ids([default_sg, rule_into_default]) == {"KG-INF-102"}
	count({r | some r in ingress.deny; r.resource == "SecurityGroupIngressRule/into-default"}) == 1 with input as {
		"kind": "infra",
		"resources": [default_sg, rule_into_default],
	}
}

test_default_security_group_without_ingress_passes if {
	adopted := {
		"type": "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
		"name": "default", "id": "sg-d", "properties": {},
	}
	ids([adopted]) == set()
}

test_rule_of_unknown_direction_counts_as_ingress if {
	rule := {
		"type": "aws:ec2/securityGroupRule:SecurityGroupRule", "name": "which-way", "id": "sgr-7",
		"properties": {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"], "type": null},
	}
	ids([rule]) == {"KG-INF-102"}
}
