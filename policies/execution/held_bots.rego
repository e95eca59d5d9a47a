# METADATA
# title: Every bot behind the gateway is free to trade
# description: >-
#   The gateway holds a bot that keeps hitting its caps (a runaway) with the bot's own kill switch; the
#   on-call person needs to know which bot, and why, before releasing it.
package keyguard.execution.held_bots

import rego.v1

import data.keyguard.lib

# METADATA
# title: No bot is held by its kill switch
# custom:
#   id: KG-EXE-208
#   severity: high
#   remediation: >-
#     Find why the bot ran away (its refusals name the cap it kept hitting), fix or stop it, then release it with
#     keyguard gateway kill-switch release --bot NAME.
deny contains finding if {
	some name, bot in object.get(input, ["state", "bots"], {})
	object.get(bot, "kill_switch_engaged", null) != false
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("%s/%s", [worker, name]),
		sprintf("bot %s behind %s is held by its kill switch (%v); refusals so far: %v", [
			name, worker,
			object.get(bot, "held_reason", null),
			object.get(bot, "refusals", null),
		]),
		{
			"kill_switch_engaged": object.get(bot, "kill_switch_engaged", null),
			"held_reason": object.get(bot, "held_reason", null),
			"refusals": object.get(bot, "refusals", null),
		},
	)
}

worker := object.get(input, "worker", "unknown-worker")
