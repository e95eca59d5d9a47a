# METADATA
# title: Infra helpers
# description: >-
#   Shared selection and normalisation for the infra rules: readable resources by type token,
#   resource ids, security-group ingress in one shape (inline, securityGroupRule, vpc ingress rule),
#   and IAM policy statements. Holds no deny rules.
package keyguard.infra.common

import rego.v1

# Resources the collector could read; an unreadable one is reported once by the readability rule.
readable contains r if {
	some r in input.resources
	object.get(r, "error", null) == null
}

of_type(type_token) := {r | some r in readable; r.type == type_token}

# "Instance/exec-host": the type's last segment keeps ids short but unambiguous across kinds.
resource_id(r) := sprintf("%s/%s", [type_last_segment(r.type), r.name])

type_last_segment(type_token) := parts[count(parts) - 1] if parts := split(type_token, ":")

list(x) := x if is_array(x)

list(x) := [x] if is_string(x)

list(x) := [] if {
	not is_array(x)
	not is_string(x)
}

prop(r, name) := object.get(object.get(r, "properties", {}), name, null)

ingress contains rule if {
	some r in of_type("aws:ec2/securityGroup:SecurityGroup")
	some i in list(prop(r, "ingress"))
	rule := {
		"resource": r,
		"group": r.id,
		"protocol": lower(sprintf("%v", [object.get(i, "protocol", "-1")])),
		"from": object.get(i, "fromPort", null),
		"to": object.get(i, "toPort", null),
		"cidrs": array.concat(list(object.get(i, "cidrBlocks", [])), list(object.get(i, "ipv6CidrBlocks", []))),
		"peer_groups": array.concat(
			list(object.get(i, "securityGroups", [])),
			[x | object.get(i, "self", false) == true; x := "self"],
		),
	}
}

ingress contains rule if {
	some r in of_type("aws:ec2/securityGroupRule:SecurityGroupRule")
	prop(r, "type") == "ingress"
	rule := {
		"resource": r,
		"group": prop(r, "securityGroupId"),
		"protocol": lower(sprintf("%v", [prop(r, "protocol")])),
		"from": prop(r, "fromPort"),
		"to": prop(r, "toPort"),
		"cidrs": array.concat(list(prop(r, "cidrBlocks")), list(prop(r, "ipv6CidrBlocks"))),
		"peer_groups": array.concat(
			list(prop(r, "sourceSecurityGroupId")),
			[x | prop(r, "self") == true; x := "self"],
		),
	}
}

ingress contains rule if {
	some r in of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
	rule := {
		"resource": r,
		"group": prop(r, "securityGroupId"),
		"protocol": lower(sprintf("%v", [prop(r, "ipProtocol")])),
		"from": prop(r, "fromPort"),
		"to": prop(r, "toPort"),
		"cidrs": array.concat(list(prop(r, "cidrIpv4")), list(prop(r, "cidrIpv6"))),
		"peer_groups": array.concat(list(prop(r, "referencedSecurityGroupId")), list(prop(r, "prefixListId"))),
	}
}

# A rule reaches a port when it allows every protocol, or TCP with a range containing it;
# a TCP rule whose range is unknown is assumed to reach every port (unknown is never safe).
reaches_port(rule, _) if rule.protocol in data.infra.all_protocols

reaches_port(rule, port) if {
	rule.protocol in data.infra.tcp_protocols
	rule.from <= port
	port <= rule.to
}

reaches_port(rule, _) if {
	rule.protocol in data.infra.tcp_protocols
	not is_number(rule.from)
}

reaches_port(rule, _) if {
	rule.protocol in data.infra.tcp_protocols
	not is_number(rule.to)
}

# Every identity policy document in the input: standalone policies, role policies, and role inline policies.
identity_policies contains {"resource": r, "policy": prop(r, "policy")} if {
	some type_token in data.infra.identity_policy_types
	some r in of_type(type_token)
}

identity_policies contains {"resource": r, "policy": inline.policy} if {
	some r in of_type("aws:iam/role:Role")
	some inline in list(prop(r, "inlinePolicies"))
	inline.policy
}

document(policy) := json.unmarshal(policy) if {
	is_string(policy)
	json.is_valid(policy)
}

document(policy) := policy if is_object(policy)

allow_statements(policy) := [s |
	some s in statements(document(policy))
	object.get(s, "Effect", "") == "Allow"
]

# A policy's Statement may be a single object or an array of them.
statements(doc) := doc.Statement if is_array(doc.Statement)

statements(doc) := [doc.Statement] if is_object(doc.Statement)

actions(statement) := [lower(a) | some a in list(object.get(statement, "Action", []))]

resources(statement) := list(object.get(statement, "Resource", []))

# IAM action patterns use * and ? wildcards with no delimiter.
action_grants(pattern, action) if glob.match(pattern, [], action)

# Declared secrets count as the vault's even when unreadable (that is reported on its own).
vault_secret_arns contains arn if {
	some s in input.resources
	s.type == "aws:secretsmanager/secret:Secret"
	some arn in [prop(s, "arn"), s.id]
	is_string(arn)
	startswith(arn, "arn:")
}

live_eips contains ip if {
	some e in of_type("aws:ec2/eip:Eip")
	ip := prop(e, "publicIp")
	is_string(ip)
	ip != ""
	count(eip_instances(e)) > 0
}

# An EIP is associated through its own `instance` property or through separate EipAssociation resources.
eip_instances(e) := {i | some i in [prop(e, "instance")]; is_string(i); i != ""} | {i |
	some a in of_type("aws:ec2/eipAssociation:EipAssociation")
	prop(a, "allocationId") in {e.id, prop(e, "allocationId")}
	i := prop(a, "instanceId")
	is_string(i)
}
