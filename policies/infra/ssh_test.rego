package keyguard.infra.ssh_test

import rego.v1

import data.keyguard.infra.ssh

sg(ingress_rules) := {
	"type": "aws:ec2/securityGroup:SecurityGroup", "name": "exec-sg", "id": "sg-1",
	"properties": {"ingress": ingress_rules},
}

vpc_rule(name, props) := {
	"type": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "name": name, "id": name,
	"properties": props,
}

# A vpc ingress rule for TCP port 22 from one IPv4 range into sg-1.
ssh_from(name, cidr) := vpc_rule(name, {
	"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": cidr,
	"securityGroupId": "sg-1",
})

findings(resources) := found if {
	found := ssh.deny with input as {"kind": "infra", "resources": resources}
}

test_ssh_from_one_admin_address_passes if {
	count(findings([ssh_from("ssh-admin", "198.51.100.7/32")])) == 0
}

test_ssh_from_a_range_fires if {
	some r in findings([ssh_from("ssh-office", "198.51.100.0/24")])
	r.id == "KG-INF-103"
	r.resource == "SecurityGroupIngressRule/ssh-office"
}

test_ssh_inside_a_port_range_from_world_fires if {
	some r in findings([sg([{"protocol": "tcp", "fromPort": 20, "toPort": 30, "cidrBlocks": ["0.0.0.0/0"]}])])
	r.evidence.source == "0.0.0.0/0"
}

test_all_protocols_rule_reaches_ssh if {
	count(findings([sg([{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["10.0.0.0/8"]}])])) > 0
}

test_tcp_rule_with_unknown_ports_reaches_ssh if {
	count(findings([sg([{"protocol": "tcp", "cidrBlocks": ["10.0.0.0/8"]}])])) > 0
}

test_other_port_from_range_is_not_ssh if {
	count(findings([sg([{"protocol": "tcp", "fromPort": 8080, "toPort": 8080, "cidrBlocks": ["10.0.0.0/8"]}])])) == 0
}

test_ssh_from_ipv6_host_fires if {
	count(findings([sg([{"protocol": "tcp", "fromPort": 22, "toPort": 22, "ipv6CidrBlocks": ["2001:db8::1/128"]}])])) > 0
}

test_ssh_from_peer_security_group_fires if {
	legacy := {
		"type": "aws:ec2/securityGroupRule:SecurityGroupRule", "name": "ssh-bastion", "id": "sgr-9",
		"properties": {
			"type": "ingress", "protocol": "tcp", "fromPort": 22, "toPort": 22,
			"sourceSecurityGroupId": "sg-bastion", "securityGroupId": "sg-1",
		},
	}
	some r in findings([legacy])
	r.evidence.source == "sg-bastion"
}

test_two_admin_addresses_fire if {
	resources := [ssh_from("ssh-a", "198.51.100.7/32"), ssh_from("ssh-b", "198.51.100.8/32")]
	resources_hit := {r.resource | some r in findings(resources)}
	resources_hit == {"SecurityGroupIngressRule/ssh-a", "SecurityGroupIngressRule/ssh-b"}
}

test_ssh_rule_with_null_protocol_reaches_ssh if {
	some r in findings([sg([{"protocol": null, "fromPort": 0, "toPort": 0, "cidrBlocks": ["10.0.0.0/8"]}])])
	r.id == "KG-INF-103"
}

test_one_admin_address_in_two_spellings_is_one_source if {
	count(findings([ssh_from("a", "198.51.100.7/32"), ssh_from("b", "198.51.100.7")])) == 0
}
