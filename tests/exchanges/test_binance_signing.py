"""The one Binance client signs what it sends: whatever characters a parameter holds, the query the exchange checks
the signature against is the one that was signed (a mismatch is -1022 and the order is lost to the bot)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from keyguard.exchanges.binance_client import BinanceSpotClient, encode_query
from keyguard.sandbox import SandboxHandle

TRADER_FLAGS = {"enableReading": True, "enableSpotAndMarginTrading": True}


@pytest.mark.parametrize("client_order_id", ["plain-id_1.2", "with:colon/and/slash", "X_y-z.1"])
def test_orders_with_any_legal_client_order_id_are_accepted_and_keep_it(sandbox: SandboxHandle,
                                                                        client_order_id: str) -> None:
    key = sandbox.create_key(label="signing", flags=TRADER_FLAGS)
    client = BinanceSpotClient(sandbox.url, key["api_key"], key["secret"])
    try:
        placed = client.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                                   "quantity": 0.02, "price": "1000.5", "newClientOrderId": client_order_id})
        assert placed["clientOrderId"] == client_order_id
        assert client.get_order("BTCUSDT", client_order_id)["status"] == "NEW"
    finally:
        client.close()


@pytest.mark.parametrize("params", [
    {"symbol": "BTCUSDT", "quantity": 0.001, "timestamp": 1764480000000, "recvWindow": 5000, "flag": True},
    {"note": "a b&c=d+e/f:g", "ü": "ß", "empty": "", "list": "[1,2]", "pct": "100%"},
])
def test_the_query_is_what_urlencode_would_send(params: dict[str, object]) -> None:
    """The exchange recomputes the signature over the query it receives; any difference from the standard encoding
    other clients (and Binance's examples) use would be a rejected order."""
    assert encode_query(params) == urlencode(params)
