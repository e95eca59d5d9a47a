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

# A property of a resource; a missing or null properties object reads as every property missing (null).
prop(r, name) := object.get(r, ["properties", name], null)

# A property path inside a resource (["metadataOptions", "httpTokens"]); null wherever the path is broken.
prop_path(r, path) := object.get(r, array.concat(["properties"], path), null)

ingress contains rule if {
	some r in groups
	some i in list(prop(r, "ingress"))
	is_object(i)
	rule := {
		"resource": r,
		"group": r.id,
		"default_group": default_group(r),
		"protocol": protocol(object.get(i, "protocol", null)),
		"from": object.get(i, "fromPort", null),
		"to": object.get(i, "toPort", null),
		"cidrs": array.concat(list(object.get(i, "cidrBlocks", [])), list(object.get(i, "ipv6CidrBlocks", []))),
		"peer_groups": array.concat(
			array.concat(list(object.get(i, "securityGroups", [])), list(object.get(i, "prefixListIds", []))),
			[x | object.get(i, "self", false) == true; x := "self"],
		),
	}
}

ingress contains rule if {
	some r in of_type("aws:ec2/securityGroupRule:SecurityGroupRule")

	# A rule that does not say it is egress is taken as ingress: an unknown direction is never safe.
	not egress(r)
	rule := {
		"resource": r,
		"group": prop(r, "securityGroupId"),
		"default_group": prop(r, "securityGroupId") in default_group_ids,
		"protocol": protocol(prop(r, "protocol")),
		"from": prop(r, "fromPort"),
		"to": prop(r, "toPort"),
		"cidrs": array.concat(list(prop(r, "cidrBlocks")), list(prop(r, "ipv6CidrBlocks"))),
		"peer_groups": array.concat(
			array.concat(list(prop(r, "sourceSecurityGroupId")), list(prop(r, "prefixListIds"))),
			[x | prop(r, "self") == true; x := "self"],
		),
	}
}

ingress contains rule if {
	some r in of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
	rule := {
		"resource": r,
		"group": prop(r, "securityGroupId"),
		"default_group": prop(r, "securityGroupId") in default_group_ids,
		"protocol": protocol(prop(r, "ipProtocol")),
		"from": prop(r, "fromPort"),
		"to": prop(r, "toPort"),
		"cidrs": array.concat(list(prop(r, "cidrIpv4")), list(prop(r, "cidrIpv6"))),
		"peer_groups": array.concat(list(prop(r, "referencedSecurityGroupId")), list(prop(r, "prefixListId"))),
	}
}

egress(rule) if lower(prop(rule, "type")) == "egress"

# Security groups with inline ingress: declared groups and the VPC's default group (adopted or read live).
groups := of_type("aws:ec2/securityGroup:SecurityGroup") | of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")

# The VPC's default group: what anything launched without a group of its own gets.
default default_group(_) := false

default_group(r) if r.type == "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"

default_group(r) if prop(r, "name") == data.infra.default_group_name

default_group_ids contains r.id if {
	some r in groups
	default_group(r)
}

# A protocol in one spelling ("TCP", 6, "6" and "tcp" alike); a missing one is unknown, so every protocol.
protocol(value) := lower(sprintf("%v", [value])) if {
	value != null
	value != ""
}

else := data.infra.all_protocols[0]

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

# Statements that allow: Effect "Allow" in any case. A statement that does not say Deny is not taken as one.
allow_statements(policy) := [s |
	some s in statements(document(policy))
	is_object(s)
	not denies(s)
]

denies(statement) if {
	some effect in element(statement, "Effect")
	lower(effect) == "deny"
}

# A policy's Statement may be a single object or an array of them.
statements(doc) := [s | some value in element(doc, "Statement"); some s in one_or_many(value)]

one_or_many(x) := x if is_array(x)

one_or_many(x) := [x] if is_object(x)

# The values of a policy element, whatever the case of its name ("Action", "action"); [] when absent.
element(container, name) := [value | some key, value in container; lower(key) == lower(name)]

# Action and NotAction patterns in lower case (IAM actions are case-insensitive), a string or a list each.
actions(statement) := action_patterns(statement, "Action")

not_actions(statement) := action_patterns(statement, "NotAction")

action_patterns(statement, name) := [lower(a) | some value in element(statement, name); some a in list(value)]

resources(statement) := [r | some value in element(statement, "Resource"); some r in list(value)]

# Allow with NotAction or NotResource grants everything but a few (the element's mere presence counts).
not_action(statement) if count(element(statement, "NotAction")) > 0

not_resource(statement) if count(element(statement, "NotResource")) > 0

# IAM action patterns use * and ? wildcards with no delimiter.
action_grants(pattern, action) if glob.match(pattern, [], action)

# The statement grants the action: a matching Action pattern, or a NotAction that does not exclude it.
grants(statement, action) if {
	some pattern in actions(statement)
	action_grants(pattern, action)
}

grants(statement, action) if {
	not_action(statement)
	not excluded(statement, action)
}

excluded(statement, action) if {
	some pattern in not_actions(statement)
	action_grants(pattern, action)
}

# A wildcard anywhere in an action or resource (* or ?), as IAM reads them.
wildcard(text) if regex.match(`[*?]`, text)

# AWS-managed policies attached to an identity, by ARN (attachment resources and a role's managedPolicyArns).
attached_policies contains {"resource": r, "arn": arn} if {
	some type_token in data.infra.policy_attachment_types
	some r in of_type(type_token)
	arn := prop(r, "policyArn")
	is_string(arn)
}

attached_policies contains {"resource": r, "arn": arn} if {
	some r in of_type("aws:iam/role:Role")
	some arn in list(prop(r, "managedPolicyArns"))
}

# The name of an AWS-managed policy ARN (arn:aws:iam::aws:policy/job-function/X -> job-function/X), lower case.
aws_managed_name(arn) := lower(parts[1]) if {
	parts := regex.find_all_string_submatch_n(data.infra.aws_managed_policy_arn, arn, 1)[0]
}

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
