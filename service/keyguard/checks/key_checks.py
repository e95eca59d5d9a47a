"""The keys check: the inventory's keys inspected at their exchanges, as one Observation per cycle.

A key the exchange could not answer for is unverified: its open findings stay open, and the policy set
reports it (KG-KEY-106, with the reason). When the trouble is the exchange's (or the way to it, or the rate
budget), its keys' alerts fold into one KG-SVC-002 per exchange instead of one page per key."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from keyguard.checks.scheduler import Observation
from keyguard.exchanges.inspector import exchange_side, unverified_reason
from keyguard.exchanges.inventory import Host, keys_document
from keyguard.exchanges.keystate import KeyState
from keyguard.policy.models import Finding, Severity

EXCHANGE_UNVERIFIED_RULE = "KG-SVC-002"


def key_resource(state: KeyState) -> str:
    """The resource the policy set names a key by (lib.key_resource)."""
    return f"{state.exchange}/{state.key_id}"


def keys_observation(states: Sequence[KeyState], hosts: Sequence[Host] = ()) -> Observation:
    document = keys_document(states, hosts)
    observation = Observation(document=document, resources=[key_resource(s) for s in states],
                              facts={key_resource(s): fact for s, fact in zip(states, document["keys"], strict=True)})
    failed_at: dict[str, list[KeyState]] = defaultdict(list)
    for state in states:
        reason = unverified_reason(state)
        if reason is None and state.activity is not None and state.activity.get("error"):
            reason = f"account activity not read: {state.activity['error']}"  # its address book is unknown too
        if reason is not None:
            observation.unobserved[key_resource(state)] = reason
        if exchange_side(state):
            failed_at[state.exchange].append(state)
    for exchange, failed in sorted(failed_at.items()):
        finding = exchange_unverified_finding(exchange, failed, sum(1 for s in states if s.exchange == exchange))
        observation.health.append(finding)
        for state in failed:
            observation.inhibited[key_resource(state)] = finding.resource
    return observation


def exchange_unverified_finding(exchange: str, failed: Sequence[KeyState], total: int) -> Finding:
    kinds = sorted({str(s.error_kind or "IP probe unverified") for s in failed})
    names = ", ".join(s.key_id for s in failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
    example = unverified_reason(failed[0]) or ""
    return Finding(
        id=EXCHANGE_UNVERIFIED_RULE, severity=Severity.high, resource=f"exchange:{exchange}",
        message=(f"{len(failed)} of {total} key(s) at {exchange} could not be inspected ({', '.join(kinds)}); "
                 f"they stay unverified and their open findings stay open: {names}. First reason: {example[:300]}"),
        remediation=(f"Find out why {exchange} did not answer (outage, network, the host's rate budget or ban, "
                     "clock); until it does, treat these keys as unsafe and check them by hand if it lasts."),
        evidence={"exchange": exchange, "unverified": len(failed), "keys": total, "errors": kinds},
    )
