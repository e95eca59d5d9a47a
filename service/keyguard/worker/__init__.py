"""Execution worker: idempotent orders, risk checks, kill switch, reconciliation, live state.

Nothing is imported here, so importing one worker module does not import them all (and the CLI stays fast)."""
