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
# description: >-
#   Every promotion is timed: from the stage the worker left (by the two entries' times; a configured stage
#   with no entry of its own has no known time) and through every stage it skipped (held for no time at all).
#   A time that cannot be verified is never taken as enough.
# custom:
#   id: KG-LIVE-102
#   severity: high
#   remediation: >-
#     Demote the worker to the stage it left early and hold it there for the minimum time (sandbox 1 week,
#     paper 2 weeks, micro 1 week, small 2 weeks).
deny contains finding if {
	some step in steps
	step.from != null
	rank(step.to) > rank(step.from)
	minimum := data.execution.golive.min_days[step.from]
	not held_for(step.left, step.reached, minimum)
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("%s/golive/%s", [worker, step.to]),
		sprintf("worker %s was promoted from %s to %s after %s (minimum %d days)", [
			worker, step.from, step.to,
			held_text(step.left, step.reached), minimum,
		]),
		{"from": step.left, "to": step.reached},
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
	some skip in skips
	some stage in skip.skipped
	minimum := data.execution.golive.min_days[stage]
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("%s/golive/%s", [worker, skip.to]),
		sprintf("worker %s reached %s without holding %s for its minimum %d days (it was skipped)", [
			worker, skip.to,
			stage, minimum,
		]),
		{"from": skip.from, "to": skip.to, "skipped": stage, "history": history},
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

# A missing or null history records nothing.
history := [entry | some entry in object.get(input, ["golive", "history"], [])]

current_stage := object.get(input, ["config", "stage"], null)

rank(stage) := i if {
	some i, candidate in data.execution.golive.ladder
	candidate == stage
}

# Each move recorded or implied: between history entries, into the first entry, and to the configured stage
# when it is ahead of the recorded history (that move has no entry, so no time: `reached` is null).
steps contains {"from": history[i - 1].stage, "to": entry.stage, "left": history[i - 1], "reached": entry} if {
	some i, entry in history
	i > 0
}

steps contains {"from": null, "to": history[0].stage, "left": null, "reached": history[0]}

steps contains {"from": last_recorded, "to": current_stage, "left": history[count(history) - 1], "reached": null} if {
	rank(current_stage) > rank(last_recorded)
}

steps contains {"from": null, "to": current_stage, "left": null, "reached": null} if count(history) == 0

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

# Held long enough only when both times are known and far enough apart ("at least N days" includes day N).
held_for(left, reached, minimum) if days_between(left, reached) >= minimum

days_between(left, reached) := (entered_ns(reached) - entered_ns(left)) / lib.ns_per_day

entered_ns(entry) := time.parse_rfc3339_ns(entry.entered_at)

held_text(left, reached) := sprintf("%v days", [round(days_between(left, reached) * 10) / 10]) if {
	days_between(left, reached)
} else := "an unknown time"
