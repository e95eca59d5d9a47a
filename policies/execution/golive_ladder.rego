# METADATA
# title: The go-live ladder is climbed one stage at a time, with time at each stage
# description: >-
#   sandbox -> paper -> micro-live -> small-live -> full-live; each stage must be entered in order and
#   held for its minimum time before promotion, so a bot meets real money only after proving itself.
package keyguard.execution.golive_ladder

import rego.v1

import data.keyguard.lib

# METADATA
# title: No go-live stage is skipped
# custom:
#   id: KG-LIVE-101
#   severity: high
#   remediation: Demote the worker to the first skipped stage and promote it again one stage at a time.
deny contains finding if {
	some skip in skips
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("%s/golive/%s", [worker, skip.to]),
		sprintf("worker %s reached %s from %v, skipping %s", [worker, skip.to, skip.from, concat(", ", skip.skipped)]),
		{"from": skip.from, "to": skip.to, "skipped": skip.skipped, "history": history},
	)
}

# METADATA
# title: Each stage is held for its minimum time before promotion
# custom:
#   id: KG-LIVE-102
#   severity: high
#   remediation: >-
#     Demote the worker to the stage it left early and hold it there for the minimum time (sandbox 1 week,
#     paper 2 weeks, micro 1 week, small 2 weeks).
deny contains finding if {
	some i, entry in history
	i > 0
	previous := history[i - 1]
	rank(entry.stage) > rank(previous.stage)
	minimum := data.execution.golive.min_days[previous.stage]
	not held_for(previous, entry, minimum)
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("%s/golive/%s", [worker, entry.stage]),
		sprintf("worker %s was promoted from %s to %s after %s (minimum %d days)", [
			worker, previous.stage, entry.stage,
			held_text(previous, entry), minimum,
		]),
		{"from": previous, "to": entry},
	)
}

# METADATA
# title: Every go-live stage is a stage of the ladder
# custom:
#   id: KG-LIVE-105
#   severity: high
#   remediation: >-
#     Use one of the ladder's stages (sandbox, paper, micro-live, small-live, full-live) for config.stage
#     and golive.history.
deny contains finding if {
	some stage in ({entry.stage | some entry in history} | {current_stage})
	not stage in data.execution.golive.ladder
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("%s/golive/%v", [worker, stage]),
		sprintf(
			"worker %s uses go-live stage %v, which is not on the ladder %v",
			[worker, stage, data.execution.golive.ladder],
		),
		{"stage": stage, "ladder": data.execution.golive.ladder},
	)
}

worker := object.get(input, "worker", "unknown-worker")

history := object.get(input, ["golive", "history"], [])

current_stage := object.get(input, ["config", "stage"], null)

rank(stage) := i if {
	some i, candidate in data.execution.golive.ladder
	candidate == stage
}

# Each step up the ladder, including the configured stage when it is ahead of the recorded history.
steps contains {"from": history[i - 1].stage, "to": entry.stage} if {
	some i, entry in history
	i > 0
}

steps contains {"from": null, "to": history[0].stage}

steps contains {"from": last_recorded, "to": current_stage} if {
	rank(current_stage) > rank(last_recorded)
}

steps contains {"from": null, "to": current_stage} if count(history) == 0

last_recorded := history[count(history) - 1].stage

skips contains {"from": step.from, "to": step.to, "skipped": skipped} if {
	some step in steps
	to_rank := rank(step.to)
	from_rank := from_rank_of(step.from)
	to_rank > from_rank + 1
	skipped := array.slice(data.execution.golive.ladder, from_rank + 1, to_rank)
}

# The ladder starts below its first stage; an unknown previous stage is treated as the start too.
from_rank_of(stage) := rank(stage) if stage != null

else := -1

held_for(previous, entry, minimum) if {
	days := (time.parse_rfc3339_ns(entry.entered_at) - time.parse_rfc3339_ns(previous.entered_at)) / lib.ns_per_day
	days >= minimum
}

held_text(previous, entry) := sprintf("%v days", [round(days * 10) / 10]) if {
	days := (time.parse_rfc3339_ns(entry.entered_at) - time.parse_rfc3339_ns(previous.entered_at)) / lib.ns_per_day
} else := "an unknown time"
