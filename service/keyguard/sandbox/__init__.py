"""Binance-compatible exchange emulator with fault injection, plus key introspection for OKX, Bybit, KuCoin,
Kraken, Bitget, Coinbase, BloFin and Gate.

In a test::

    with run_sandbox(SandboxConfig(weight_limit=100, align_windows_to_start=True)) as sandbox:
        key = sandbox.create_key(flags={"enableSpotAndMarginTrading": True}, ip_restrict=True, ips=["127.0.0.1"])
        client = ccxt.binance({
            "apiKey": key["api_key"], "secret": key["secret"],
            "urls": sandbox.ccxt_urls("binance"),          # the only change a stock client needs...
            "options": dict(BINANCE_SPOT_ONLY_OPTIONS),     # ...plus spot-only market loading
            "session": bound_session("127.0.0.1"),          # keyguard.exchanges.transport: pick the source IP
        })
        sandbox.set_faults({"endpoint": "POST /api/v3/order", "kind": "drop", "times": 1})
        sandbox.exchange.orders_of("main")                  # what really executed

Served: /api/v3/{ping,time,exchangeInfo,ticker/price,depth,account,account/commission,order,order/test,openOrders,
allOrders,myTrades}, /sapi/v1/account/{apiRestrictions,status,apiTradingStatus},
/sapi/v1/capital/withdraw/{apply,history,address/list}, /sapi/v1/asset/transfer
(POST and its history), a master account's control of its sub-accounts' keys (/sapi/v1|v2/sub-account/...: IP
restriction, delete, permissions) (plus what ccxt's loadMarkets asks for); each other exchange under /<ccxt id> with
its own signing scheme and error codes (`sandbox_urls(url, id)` gives the ccxt `urls`), Bybit also with spot orders
and /v5/user/{update,delete}-api and {update,delete}-sub-api; the admin API under /admin (Bearer token, loopback
only), including sub-accounts (POST /admin/sub-accounts) and address books (POST /admin/addresses).

Fills pay commission (SandboxConfig.maker_commission / taker_commission, Binance's 0.1% each by default) out of the
asset received, taker on arrival and maker once resting, and report it in `fills` and myTrades as Binance does.

Faults (admin PUT /admin/faults or handle.set_faults): kind latency | status | reset | malformed | drop, on one
endpoint ("POST /api/v3/order") or "*", optionally for one client_ip, `times` uses, `when` before | after
execution (drop and malformed default to after: the order executes, the client never sees the answer).
"""

from keyguard.sandbox.config import SandboxConfig, SymbolSpec
from keyguard.sandbox.server import BINANCE_SPOT_ONLY_OPTIONS, SandboxHandle, run_sandbox, sandbox_urls
from keyguard.sandbox.state import Fault, KeySpec, SandboxExchange

__all__ = [
    "BINANCE_SPOT_ONLY_OPTIONS", "Fault", "KeySpec", "SandboxConfig", "SandboxExchange", "SandboxHandle",
    "SymbolSpec", "run_sandbox", "sandbox_urls",
]
