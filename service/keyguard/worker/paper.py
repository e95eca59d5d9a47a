"""Paper venue: orders are filled by simulation at the exchange's live prices; nothing is sent to trade.

It needs only a read-only key (prices come from public endpoints), so the paper stage cannot move money
even if the worker is misconfigured.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from keyguard.exchanges.binance_client import ORDER_DOES_NOT_EXIST, ExchangeRejected


class PaperVenue:
    def __init__(
        self, price_of: Callable[[str], float], *, base_of: Mapping[str, str] | None = None,
        recv_window_ms: int = 5000, fee_rate: float = 0.001,
    ) -> None:
        self.price_of = price_of
        self.base_of = dict(base_of or {})
        # Simulated holdings of each traded base asset, so reconciliation has a paper balance to compare.
        self.holdings: dict[str, float] = {}
        self.recv_window_ms = recv_window_ms
        # Commission on each simulated fill, charged as Binance charges an account that does not pay in BNB: out of
        # what the order receives (base for a buy, quote for a sell).
        self.fee_rate = fee_rate
        self._orders: dict[str, dict[str, Any]] = {}
        self._trades: dict[int, list[dict[str, Any]]] = {}  # order id -> its fills (myTrades rows)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def new_order(self, params: Mapping[str, Any], deadline_s: float | None = None, *,
                  while_waiting: Callable[[], None] | None = None) -> dict[str, Any]:
        if while_waiting is not None:
            while_waiting()
        symbol = str(params["symbol"])
        cid = str(params["newClientOrderId"])
        qty = float(params["quantity"])
        last = self.price_of(symbol)
        side = str(params["side"])
        limit = float(params["price"]) if params.get("price") is not None else None
        crosses = limit is None or (side == "BUY" and limit >= last) or (side == "SELL" and limit <= last)
        with self._lock:
            if cid in self._orders and self._orders[cid]["status"] in ("NEW", "PARTIALLY_FILLED"):
                raise ExchangeRejected(400, -2010, "Duplicate order sent.")
            report = {
                "symbol": symbol, "orderId": next(self._ids), "clientOrderId": cid, "side": side,
                "type": params.get("type", "MARKET"), "origQty": f"{qty:.8f}",
                "executedQty": f"{qty:.8f}" if crosses else "0",
                "cummulativeQuoteQty": f"{qty * last:.8f}" if crosses else "0",
                "status": "FILLED" if crosses else "NEW", "paper": True,
            }
            self._orders[cid] = report
            answer = dict(report)
            if crosses:
                asset = self.base_of.get(symbol, symbol)
                quote_asset = symbol[len(asset):] if symbol.startswith(asset) else ""
                if side == "BUY":
                    fee, fee_asset = round(qty * self.fee_rate, 8), asset
                    self.holdings[asset] = self.holdings.get(asset, 0.0) + qty - fee
                else:
                    fee, fee_asset = round(qty * last * self.fee_rate, 8), quote_asset
                    self.holdings[asset] = self.holdings.get(asset, 0.0) - qty
                fill = {"price": f"{last:.8f}", "qty": f"{qty:.8f}", "commission": f"{fee:.8f}",
                        "commissionAsset": fee_asset, "tradeId": report["orderId"]}
                self._trades[int(report["orderId"])] = [{**fill, "symbol": symbol, "orderId": report["orderId"]}]
                answer["fills"] = [fill]
            return answer

    def my_trades(self, symbol: str, order_id: int | None = None) -> list[dict[str, Any]]:
        """The simulated trades of one order (or of all), in GET /api/v3/myTrades's commission fields."""
        with self._lock:
            return [dict(t) for oid, trades in self._trades.items() for t in trades
                    if t["symbol"] == symbol and (order_id is None or oid == order_id)]

    def get_order(self, symbol: str, client_order_id: str) -> dict[str, Any]:
        with self._lock:
            report = self._orders.get(client_order_id)
        if report is None:
            raise ExchangeRejected(400, ORDER_DOES_NOT_EXIST, "Order does not exist.")
        return dict(report)

    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(o) for o in self._orders.values()
                    if o["status"] == "NEW" and (symbol is None or o["symbol"] == symbol)]

    def cancel_open_orders(self, symbol: str) -> list[dict[str, Any]]:
        with self._lock:
            canceled = []
            for o in self._orders.values():
                if o["status"] == "NEW" and o["symbol"] == symbol:
                    o["status"] = "CANCELED"
                    canceled.append(dict(o))
            return canceled

    def account(self) -> dict[str, Any]:
        with self._lock:
            return {"balances": [{"asset": a, "free": f"{q:.8f}", "locked": "0"} for a, q in self.holdings.items()]}
