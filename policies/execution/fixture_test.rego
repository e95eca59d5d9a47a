# METADATA
# title: Shared inputs for the execution rule tests
# description: A compliant full-live worker that every execution rule leaves quiet; each test changes one fact of it.
package keyguard.execution.fixture_test

import rego.v1

doc := {
	"kind": "execution",
	"now": "2026-11-25T00:00:00Z",
	"worker": "worker-1",
	"portfolio_value": 100000,
	"exchange_limits": {"request_weight_per_minute": 6000, "orders_per_10s": 100, "orders_per_day": 200000},
	"config": {
		"max_order_notional": 1500,
		"max_orders_per_minute": 30,
		"max_position": {"BTC": 0.5, "ETH": 5},
		"daily_loss_limit": 2000,
		"kill_switch": {"enabled": true, "last_tested_at": "2026-11-20T00:00:00Z"},
		"rate_limit_budget_fraction": 0.9,
		"order_retry": {"client_order_ids": true, "status_lookup": true},
		"data_retry": {"attempts": 4, "backoff": "exponential", "jitter": true},
		"reconnect": {"backoff": "exponential", "jitter": true, "max_delay_s": 60},
		"min_fill_ratio": 0.1,
		"stage": "full-live",
		"target_allocation": 100000,
	},
	"golive": {
		"history": [
			{"stage": "sandbox", "entered_at": "2026-08-01T00:00:00Z"},
			{"stage": "paper", "entered_at": "2026-08-10T00:00:00Z"},
			{"stage": "micro-live", "entered_at": "2026-08-25T00:00:00Z"},
			{"stage": "small-live", "entered_at": "2026-09-05T00:00:00Z"},
			{"stage": "full-live", "entered_at": "2026-09-20T00:00:00Z"},
		],
		"key_permissions": {"read": true, "trade": true, "transfer": false, "withdraw": false},
	},
	"state": {
		"heartbeat_at": "2026-11-24T23:59:50Z",
		"kill_switch_engaged": false,
		"trading_state": "ACTIVE",
		"orders_last_minute": 3,
		"largest_order_notional_today": 900,
		"positions": {"BTC": 0.1, "ETH": -2},
		"daily_pnl": -120,
		"used_weight_1m": 400,
		"weight_limit_1m": 6000,
	},
}

# The document with some top-level fields replaced whole.
with_doc(fields) := object.union(object.remove(doc, object.keys(fields)), fields)

# The document with some config fields replaced whole.
with_config(fields) := with_doc({"config": object.union(object.remove(doc.config, object.keys(fields)), fields)})

# The document with some live-state fields replaced whole.
with_state(fields) := with_doc({"state": object.union(object.remove(doc.state, object.keys(fields)), fields)})

# The document without the named config fields.
without_config(names) := with_doc({"config": object.remove(doc.config, names)})

# A document at the given stage with the given go-live history of [stage, entered_at] pairs.
at_stage(stage, pairs) := object.union(
	with_config({"stage": stage}),
	{"golive": {"history": [{"stage": pair[0], "entered_at": pair[1]} | some pair in pairs]}},
)
