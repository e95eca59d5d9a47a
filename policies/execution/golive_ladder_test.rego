package keyguard.execution.golive_ladder_test

import rego.v1

import data.keyguard.execution.fixture_test as fixture
import data.keyguard.execution.golive_ladder

results(doc) := found if {
	found := golive_ladder.deny with input as doc
}

ids(doc) := {finding.id | some finding in results(doc)}

test_ladder_climbed_in_order_with_time_is_quiet if {
	count(results(fixture.doc)) == 0
}

test_worker_still_in_sandbox_is_quiet if {
	count(results(fixture.at_stage("sandbox", [["sandbox", "2026-11-20T00:00:00Z"]]))) == 0
}

test_skipping_paper_is_high if {
	doc := fixture.at_stage("micro-live", [["sandbox", "2026-08-01T00:00:00Z"], ["micro-live", "2026-09-01T00:00:00Z"]])
	some finding in results(doc)
	finding.id == "KG-LIVE-101"
	finding.severity == "high"
	finding.resource == "worker-1/golive/micro-live"
	finding.evidence.skipped == ["paper"]
}

test_starting_above_sandbox_is_high if {
	doc := fixture.at_stage("paper", [["paper", "2026-08-01T00:00:00Z"]])
	some finding in results(doc)
	finding.id == "KG-LIVE-101"
	finding.evidence.skipped == ["sandbox"]
}

test_configured_stage_ahead_of_history_is_a_skip if {
	doc := fixture.at_stage("full-live", [["sandbox", "2026-08-01T00:00:00Z"], ["paper", "2026-08-10T00:00:00Z"]])
	some finding in results(doc)
	finding.id == "KG-LIVE-101"
	finding.resource == "worker-1/golive/full-live"
	finding.evidence.skipped == ["micro-live", "small-live"]
}

test_stage_without_history_is_a_skip if {
	doc := fixture.at_stage("small-live", [])
	some finding in results(doc)
	finding.id == "KG-LIVE-101"
	finding.evidence.skipped == ["sandbox", "paper", "micro-live"]
}

test_demotion_and_repromotion_in_order_is_quiet if {
	doc := fixture.at_stage("micro-live", [
		["sandbox", "2026-08-01T00:00:00Z"],
		["paper", "2026-08-10T00:00:00Z"],
		["micro-live", "2026-08-25T00:00:00Z"],
		["paper", "2026-09-01T00:00:00Z"],
		["micro-live", "2026-09-20T00:00:00Z"],
	])
	count(results(doc)) == 0
}

test_promotion_out_of_paper_before_two_weeks_is_high if {
	doc := fixture.at_stage("micro-live", [
		["sandbox", "2026-08-01T00:00:00Z"],
		["paper", "2026-08-10T00:00:00Z"],
		["micro-live", "2026-08-20T00:00:00Z"],
	])
	some finding in results(doc)
	finding.id == "KG-LIVE-102"
	finding.severity == "high"
	finding.message == "worker worker-1 was promoted from paper to micro-live after 10 days (minimum 14 days)"
}

test_promotion_out_of_sandbox_before_a_week_is_high if {
	doc := fixture.at_stage("paper", [["sandbox", "2026-08-01T00:00:00Z"], ["paper", "2026-08-05T00:00:00Z"]])
	"KG-LIVE-102" in ids(doc)
}

test_promotion_with_unreadable_time_is_high if {
	doc := fixture.at_stage("paper", [["sandbox", "2026-08-01T00:00:00Z"], ["paper", "soon"]])
	some finding in results(doc)
	finding.id == "KG-LIVE-102"
	contains(finding.message, "after an unknown time")
}

test_unknown_stage_is_high if {
	doc := fixture.at_stage("yolo-live", [["sandbox", "2026-08-01T00:00:00Z"]])
	some finding in results(doc)
	finding.id == "KG-LIVE-105"
	finding.severity == "high"
	finding.resource == "worker-1/golive/yolo-live"
}

test_a_skipped_stage_was_never_held_for_its_time if {
	doc := fixture.at_stage("micro-live", [["sandbox", "2026-08-01T00:00:00Z"], ["micro-live", "2026-09-01T00:00:00Z"]])
	some finding in results(doc)
	finding.id == "KG-LIVE-102"
	finding.evidence.skipped == "paper"
	finding.message == "worker worker-1 reached micro-live without holding paper for its minimum 14 days (it was skipped)"
}

test_configured_stage_one_ahead_of_history_has_no_verifiable_time if {
	doc := fixture.at_stage("micro-live", [["sandbox", "2026-08-01T00:00:00Z"], ["paper", "2026-08-10T00:00:00Z"]])
	some finding in results(doc)
	finding.id == "KG-LIVE-102"
	finding.message == "worker worker-1 was promoted from paper to micro-live after an unknown time (minimum 14 days)"
	not "KG-LIVE-101" in ids(doc)
}

test_holding_exactly_the_minimum_is_enough if {
	doc := fixture.at_stage("paper", [["sandbox", "2026-08-01T00:00:00Z"], ["paper", "2026-08-08T00:00:00Z"]])
	count(results(doc)) == 0
}

test_null_history_records_nothing if {
	doc := fixture.with_doc({"golive": {"history": null}})
	{"KG-LIVE-101", "KG-LIVE-102"} == ids(doc)
}
