package keyguard.infra.eip_test

import rego.v1

import data.keyguard.infra.eip

host := {"type": "aws:ec2/instance:Instance", "name": "exec-host", "id": "i-1", "properties": {}}

eip_resource(props) := {"type": "aws:ec2/eip:Eip", "name": "exec-ip", "id": "eipalloc-1", "properties": props}

infra(resources) := {"kind": "infra", "resources": resources}

test_host_with_associated_eip_passes if {
	associated := eip_resource({"instance": "i-1", "publicIp": "203.0.113.10"})
	count(eip.deny) == 0 with input as infra([host, associated])
}

test_host_with_eip_association_resource_passes if {
	assoc := {
		"type": "aws:ec2/eipAssociation:EipAssociation", "name": "exec-ip-assoc", "id": "eipassoc-1",
		"properties": {"allocationId": "eipalloc-1", "instanceId": "i-1"},
	}
	count(eip.deny) == 0 with input as infra([host, eip_resource({"publicIp": "203.0.113.10"}), assoc])
}

test_host_without_eip_fires if {
	some r in eip.deny with input as infra([host])
	r.id == "KG-INF-101"
	r.resource == "Instance/exec-host"
}

test_disassociated_eip_fires if {
	disassociated := eip_resource({"instance": null, "publicIp": "203.0.113.10"})
	ids := {r.id | some r in eip.deny} with input as infra([host, disassociated])
	ids == {"KG-INF-101"}
}

test_eip_on_another_host_fires if {
	ids := {r.id | some r in eip.deny} with input as infra([host, eip_resource({"instance": "i-other"})])
	ids == {"KG-INF-101"}
}
