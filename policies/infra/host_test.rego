package keyguard.infra.host_test

import rego.v1

import data.keyguard.infra.imds
import data.keyguard.infra.volumes

instance(props) := {"type": "aws:ec2/instance:Instance", "name": "exec-host", "id": "i-1", "properties": props}

hardened := instance({"metadataOptions": {"httpTokens": "required"}, "rootBlockDevice": {"encrypted": true}})

infra(resources) := {"kind": "infra", "resources": resources}

test_hardened_instance_passes_imds_and_volume_rules if {
	count(imds.deny) + count(volumes.deny) == 0 with input as infra([hardened])
}

test_imdsv1_optional_tokens_fire if {
	some r in imds.deny with input as infra([instance({"metadataOptions": {"httpTokens": "optional"}})])
	r.id == "KG-INF-104"
}

test_missing_metadata_options_fire if {
	some r in imds.deny with input as infra([instance({})])
	r.resource == "Instance/exec-host"
}

test_unencrypted_root_volume_fires if {
	some r in volumes.deny with input as infra([instance({"rootBlockDevice": {"encrypted": false}})])
	r.id == "KG-INF-105"
}

test_root_volume_with_unknown_encryption_fires if {
	some r in volumes.deny with input as infra([instance({})])
	r.id == "KG-INF-105"
}

test_null_metadata_options_fire if {
	some r in imds.deny with input as infra([instance({"metadataOptions": null, "rootBlockDevice": {"encrypted": true}})])
	r.id == "KG-INF-104"
}

test_null_root_block_device_fires if {
	some r in volumes.deny with input as infra([instance({"rootBlockDevice": null})])
	r.id == "KG-INF-105"
}

test_null_properties_read_as_every_control_missing if {
	bare := {"type": "aws:ec2/instance:Instance", "name": "exec-host", "id": "i-1", "properties": null}
	count(imds.deny) + count(volumes.deny) == 2 with input as infra([bare])
}

test_launch_template_without_imdsv2_fires if {
	template := {"type": "aws:ec2/launchTemplate:LaunchTemplate", "name": "bots", "id": "lt-1", "properties": {}}
	some r in imds.deny with input as infra([template])
	r.resource == "LaunchTemplate/bots"
}

test_instance_takes_its_launch_templates_imds_options if {
	template := {
		"type": "aws:ec2/launchTemplate:LaunchTemplate", "name": "bots", "id": "lt-1",
		"properties": {"metadataOptions": {"httpTokens": "required"}},
	}
	from_template := instance({"launchTemplate": {"id": "lt-1"}, "rootBlockDevice": {"encrypted": true}})
	count(imds.deny) == 0 with input as infra([template, from_template])
}
