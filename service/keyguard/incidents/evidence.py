"""The evidence pack: what the next sixty minutes need, read at the exchange while the key is being contained.

For the key's account, the last 24 hours: orders and trades (each marked sent by Keyguard or foreign, by the
workers' journals), withdrawals and transfers, the withdrawal address book; the key's own permissions and IP
binding as the exchange reports them now (and its last use, where the exchange reports it: Binance does not); and
the journals' view beside the exchange's. Kept with the containment run; `keyguard incident evidence N` writes it
as JSON and a readable summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from keyguard.exchanges.inventory import InventoryKey
from keyguard.redact import redact_value

WINDOW_H = 24


def read_evidence(adapter: Any, key: InventoryKey, now: datetime) -> dict[str, Any]:
    """Read the pack with the key itself (before it is cut). Binance only, for now."""
    from keyguard.checks.activity import Journals, sent_by_workers, watched_symbols, worker_configs

    since = now - timedelta(hours=WINDOW_H)
    since_ms = int(since.timestamp() * 1000)
    configs = worker_configs(key)
    journals = Journals()
    try:
        orders_in_journals = journals.orders(configs)
    finally:
        journals.dispose()
    sent_ids, journal_symbols = sent_by_workers(orders_in_journals)
    journal_rows = [{"worker": worker, "client_order_id": row.client_order_id, "symbol": row.symbol, "side": row.side,
                     "quantity": row.quantity, "status": str(row.status), "origin": row.origin,
                     "exchange_order_id": row.exchange_order_id, "executed_qty": row.executed_qty}
                    for worker, row in orders_in_journals]
    watch = key.activity
    symbols = watched_symbols(key, configs, journal_symbols)
    orders: list[dict[str, Any]] = []
    trades: list[dict[str, Any]] = []
    for symbol in symbols:
        orders += adapter.all_orders(symbol, since_ms)
        trades += adapter.my_trades(symbol, since_ms)
    foreign_ids = {o.get("orderId") for o in orders if str(o.get("clientOrderId")) not in sent_ids}
    for order in orders:
        order["sent_by_keyguard"] = order.get("orderId") not in foreign_ids
    for trade in trades:
        trade["sent_by_keyguard"] = trade.get("orderId") not in foreign_ids
    activity = adapter.read_activity(since_ms, [], list(watch.expected_transfer_types) if watch else [],
                                     withdrawals_max_age_s=15.0)
    restrictions = adapter.api_restrictions()
    pack = {
        # Not "key": a field named like a secret is masked by the redaction.
        "subject": {"id": key.id, "resource": key.resource, "exchange": key.exchange, "reported": restrictions,
                "last_used": "not reported by the exchange"},
        "window": {"from": since.strftime("%Y-%m-%dT%H:%M:%SZ"), "to": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "symbols": symbols},
        "orders": orders, "trades": trades, "withdrawals": activity["withdrawals"],
        "transfers": activity["transfers"], "withdrawal_addresses": activity["addresses"],
        "journal": journal_rows,
        "counts": {"orders": len(orders), "foreign_orders": len(foreign_ids), "trades": len(trades),
                   "foreign_trades": sum(1 for t in trades if not t["sent_by_keyguard"]),
                   "withdrawals": len(activity["withdrawals"]), "transfers": len(activity["transfers"]),
                   "journal_orders": len(journal_rows)},
        "read_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return dict(redact_value(pack))


def summary(pack: dict[str, Any], title: str) -> str:
    """The pack as a person reads it first: counts, then every foreign order, trade, withdrawal and transfer."""
    counts = pack.get("counts", {})
    window = pack.get("window", {})
    key = pack.get("subject", {})
    reported = key.get("reported") or {}
    flags = ", ".join(sorted(k for k, v in reported.items() if v is True)) or "none"
    lines = [f"# {title}", "",
             f"Key {key.get('id')} ({key.get('resource')}); window {window.get('from')} to {window.get('to')} "
             f"on {', '.join(window.get('symbols') or []) or 'no symbols'}.", "",
             f"- Permissions the exchange reports now: {flags}; IP restricted: {reported.get('ipRestrict')}; "
             f"last used: {key.get('last_used')}",
             f"- Orders: {counts.get('orders', 0)} ({counts.get('foreign_orders', 0)} not sent by Keyguard); "
             f"trades: {counts.get('trades', 0)} ({counts.get('foreign_trades', 0)} foreign); "
             f"withdrawals: {counts.get('withdrawals', 0)}; transfers: {counts.get('transfers', 0)}; "
             f"journal orders: {counts.get('journal_orders', 0)}", ""]
    foreign = [o for o in pack.get("orders", []) if not o.get("sent_by_keyguard")]
    if foreign:
        lines += ["## Orders Keyguard did not send", "", "| time (ms) | symbol | side | type | qty | price | status |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {o.get('time')} | {o.get('symbol')} | {o.get('side')} | {o.get('type')} | {o.get('origQty')} | "
                  f"{o.get('price')} | {o.get('status')} |" for o in foreign]
        lines.append("")
    tables = (("Withdrawals", pack.get("withdrawals", []), ("applyTime", "coin", "amount", "address")),
              ("Transfers", pack.get("transfers", []), ("timestamp", "type", "asset", "amount")),
              ("Withdrawal address book", pack.get("withdrawal_addresses", []), ("coin", "address", "network", "name")))
    for name, rows, columns in tables:
        if rows:
            lines += [f"## {name}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
            lines.append("")
    others = pack.get("other_keys") or []
    if others:
        lines += ["## The inventory's other keys at the exchange, now", "", "| key | may | IP restricted | error |",
                  "|---|---|---|---|"]
        for other in others:
            reported = other.get("reported") or {}
            may = ", ".join(sorted(k for k, v in reported.items() if v is True)) or "-"
            lines.append(f"| {other.get('resource')} | {may} | {reported.get('ipRestrict', '?')} | "
                         f"{other.get('error', '')} |")
        lines.append("")
    lines.append("Next: compare the journal's orders with the exchange's (both in the JSON), find where the secret "
                 "leaked, change the account password and 2FA.")
    return "\n".join(lines) + "\n"

