"""HTTP sessions for ccxt's sync client that leave from a chosen local source address."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter


class SourceAddressAdapter(HTTPAdapter):
    """Binds every connection's local end to one address: how a host with two IPs picks its egress IP."""

    def __init__(self, source_ip: str, **kwargs: Any):
        self.source_ip = source_ip
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


def bound_session(source_ip: str | None, pool_size: int = 10) -> requests.Session:
    """A requests Session for ccxt's `session` option; None = the OS picks the source address. `pool_size`
    connections per host are kept open for reuse (the service shares one session between many keys)."""
    session = requests.Session()
    # ccxt's own default: no proxies from the environment, so the source address really is ours.
    session.trust_env = False
    adapter = (SourceAddressAdapter(source_ip, pool_maxsize=pool_size) if source_ip
               else HTTPAdapter(pool_maxsize=pool_size))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
