"""Foreign activity: what an exchange recorded on a watched account that Keyguard did not send.

Each cycle a watched key's account is read (orders of its symbols, withdrawals, transfers, the withdrawal address
book) within the shared rate budget, by the same inspection that reads its permissions. Orders are matched
against the journals of the workers trading with the key: an order whose client order id no journal minted is
foreign. Foreign orders, withdrawals and transfers are kept in the store until an operator's release reviews them,
so a stolen key's trace never ages out of the exchange's history window and quietly resolves its finding. The
policy set (keyguard.keys.activity) judges the result; what could not be read is itself a finding."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from keyguard.errors import KeyguardError
from keyguard.exchanges.inventory import InventoryKey
from keyguard.redact import redact_text, redact_value
from keyguard.store.db import session_scope
from keyguard.store.models import ActivityEvent, as_utc

log = logging.getLogger(__name__)


def worker_configs(key: InventoryKey) -> list[Any]:
    """The configs of the workers trading with `key` (their journal, kill switch and symbols)."""
    from keyguard.gateway.config import load_trading_config

    return [load_trading_config(path) for path in key.workers]


class Journals:
    """The workers' journals, opened once each: which client order ids Keyguard minted, and for which symbols."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def engine(self, url: str) -> Engine:
        from keyguard.worker.journal import journal_engine

        with self._lock:
            if url not in self._engines:
                self._engines[url] = journal_engine(url)
            return self._engines[url]

    def _sessions(self, configs: list[Any]) -> Iterator[tuple[Any, Session]]:
        """(config, session) for each worker's journal; a worker that never ran has none."""
        for config in configs:
            url = config.journal()
            if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
                continue
            with Session(self.engine(url)) as session:
                yield config, session

    def orders(self, configs: list[Any]) -> list[tuple[str, Any]]:
        """(worker, JournalOrder) for every order in the workers' journals (the evidence pack's view)."""
        from keyguard.worker.journal import JournalOrder

        return [(config.worker, order) for config, session in self._sessions(configs)
                for order in session.exec(select(JournalOrder))]

    def sent(self, configs: list[Any]) -> tuple[set[str], set[str]]:
        """(client order ids the workers sent, symbols they traded), read each cycle: two columns only. Orders a
        worker adopted from the exchange (origin external) are not Keyguard's."""
        from keyguard.worker.journal import JournalOrder

        ids: set[str] = set()
        symbols: set[str] = set()
        for _, session in self._sessions(configs):
            for client_id, symbol in session.exec(select(JournalOrder.client_order_id, JournalOrder.symbol)
                                                  .where(JournalOrder.origin == "worker")):
                ids.add(client_id)
                symbols.add(symbol)
        return ids, symbols

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()


def sent_by_workers(orders: list[tuple[str, Any]]) -> tuple[set[str], set[str]]:
    """(client order ids, symbols) of the journal orders a worker sent itself (not adopted from the exchange)."""
    mine = [order for _, order in orders if order.origin == "worker"]
    return {o.client_order_id for o in mine}, {o.symbol for o in mine}


def watched_symbols(key: InventoryKey, configs: list[Any], journal_symbols: set[str]) -> list[str]:
    """The symbols whose orders are read: the watch's own list, else the workers' strategy and journal symbols."""
    declared = set(key.activity.symbols) if key.activity else set()
    return sorted(declared or ({s for c in configs for s in c.declared_symbols()} | journal_symbols))


def read_activity(adapter: Any, key: InventoryKey, journals: Journals, now: datetime) -> dict[str, Any]:
    """The raw records of a watched key's account (called on the inspection's worker thread), with the journals'
    view: {orders, withdrawals, transfers, addresses, sent_ids, since} or {error, since}."""
    watch = key.activity
    assert watch is not None
    since = now - timedelta(hours=watch.lookback_h)
    out: dict[str, Any] = {"since": since.strftime("%Y-%m-%dT%H:%M:%SZ")}
    reader = getattr(adapter, "read_activity", None)
    if reader is None:
        out["error"] = f"Keyguard cannot read {key.exchange} account activity yet; watch this account by hand"
        return out
    try:
        configs = worker_configs(key)
        sent_ids, journal_symbols = journals.sent(configs)
        symbols = watched_symbols(key, configs, journal_symbols)
        raw = reader(int(since.timestamp() * 1000), symbols, list(watch.expected_transfer_types))
    except KeyguardError as exc:
        out["error"] = redact_text(str(exc))
        return out
    except Exception as exc:  # a bug here is a blind spot on the account, reported as one
        out["error"] = redact_text(f"{exc.__class__.__name__}: {exc}")
        return out
    out.update(raw)
    out["sent_ids"] = sent_ids
    out["symbols"] = symbols
    return out


def _order(raw: dict[str, Any], sent: bool) -> dict[str, Any]:
    return {
        "order_id": raw.get("orderId"), "client_order_id": raw.get("clientOrderId"), "symbol": raw.get("symbol", "?"),
        "side": raw.get("side", "?"), "type": raw.get("type"), "quantity": raw.get("origQty"),
        "price": raw.get("price"), "status": raw.get("status"), "time": _iso_ms(raw.get("time")),
        "sent_by_keyguard": sent,
    }


def _iso_ms(value: Any) -> str | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _when(record: dict[str, Any]) -> datetime | None:
    text = record.get("time")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class ActivityLedger:
    """The store's memory of foreign activity per key, and the policy input it gives each watched key."""

    def __init__(self, store: Engine) -> None:
        self.store = store

    def document(self, key: InventoryKey, raw: dict[str, Any], now: datetime,
                 reviewed_before: datetime | None = None) -> dict[str, Any]:
        """Record what is new, and return the key's `activity` policy input: every foreign order, withdrawal and
        transfer not yet reviewed (nor first seen before `reviewed_before`, what a release is reviewing), the
        current address book, what the account expects, and any read error."""
        watch = key.activity
        assert watch is not None
        resource = key.resource
        events: list[tuple[str, str, dict[str, Any]]] = []
        if "error" not in raw:
            sent_ids: set[str] = raw.get("sent_ids", set())
            for order in raw.get("orders", []):
                if isinstance(order, dict) and str(order.get("clientOrderId")) not in sent_ids:
                    events.append(("order", f"{order.get('symbol')}:{order.get('orderId')}", _order(order, False)))
            for w in raw.get("withdrawals", []):
                if isinstance(w, dict):
                    events.append(("withdrawal", str(w.get("id")), {
                        "id": w.get("id"), "coin": w.get("coin", "?"), "amount": _number(w.get("amount")),
                        "address": w.get("address", "?"), "network": w.get("network"), "status": w.get("status"),
                        "time": str(w.get("applyTime", "")).replace(" ", "T") + "Z" if w.get("applyTime") else None,
                    }))
            for t in raw.get("transfers", []):
                if isinstance(t, dict):
                    events.append(("transfer", str(t.get("tranId")), {
                        "id": t.get("tranId"), "type": t.get("type", "?"), "asset": t.get("asset", "?"),
                        "amount": _number(t.get("amount")), "status": t.get("status"),
                        "time": _iso_ms(t.get("timestamp")),
                    }))
        with session_scope(self.store) as session:
            for kind, ref, record in events:
                self._insert(session, resource, kind, ref, record, now)
            pending = session.exec(select(ActivityEvent).where(ActivityEvent.resource == resource,
                                                               col(ActivityEvent.cleared_at).is_(None))
                                   .order_by(col(ActivityEvent.pk))).all()
            pending = [e for e in pending if reviewed_before is None or as_utc(e.first_seen) > reviewed_before]
            kept = {kind: [e.record for e in pending if e.kind == kind] for kind in ("order", "withdrawal", "transfer")}
        addresses = [{"coin": a.get("coin", "?"), "address": a.get("address", "?"), "network": a.get("network"),
                      "name": a.get("name")} for a in raw.get("addresses", []) if isinstance(a, dict)]
        return {
            "orders": kept["order"], "withdrawals": kept["withdrawal"], "transfers": kept["transfer"],
            "withdrawal_addresses": addresses,
            "expected": {"withdrawal_addresses": list(watch.expected_withdrawal_addresses),
                         "transfer_types": list(watch.expected_transfer_types)},
            "since": raw.get("since"), "error": raw.get("error"),
        }

    def _insert(self, session: Session, resource: str, kind: str, ref: str, record: dict[str, Any],
                now: datetime) -> None:
        dialect = session.get_bind().dialect.name
        module: Any = postgresql if dialect == "postgresql" else sqlite
        statement = module.insert(ActivityEvent).values(
            resource=resource, kind=kind, ref=ref, at=_when(record), record=redact_value(record), first_seen=now,
        ).on_conflict_do_nothing(index_elements=["resource", "kind", "ref"])
        if session.execute(statement).rowcount:  # type: ignore[attr-defined]
            log.warning("foreign activity on %s: %s %s", resource, kind, ref)

    def clear(self, resource: str, before: datetime, actor: str, now: datetime) -> int:
        """An operator reviewed what was seen up to `before`: it stops keeping the findings open."""
        with session_scope(self.store) as session:
            rows = session.exec(select(ActivityEvent).where(ActivityEvent.resource == resource,
                                                            col(ActivityEvent.cleared_at).is_(None))).all()
            cleared = [r for r in rows if as_utc(r.first_seen) <= before]
            for row in cleared:
                row.cleared_at, row.cleared_by = now, actor
                session.add(row)
        return len(cleared)

    def pending(self, resource: str, after: datetime | None = None) -> list[ActivityEvent]:
        with session_scope(self.store) as session:
            rows = list(session.exec(select(ActivityEvent).where(ActivityEvent.resource == resource,
                                                                 col(ActivityEvent.cleared_at).is_(None))).all())
            for row in rows:
                session.expunge(row)
        return [r for r in rows if after is None or as_utc(r.first_seen) > after]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
