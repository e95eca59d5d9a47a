"""Containment: the seed's "first five minutes", run by Keyguard within a second of the finding.

For one key, in order: engage the kill switch of every worker trading with it (a file every process obeys, so it
holds across processes and restarts); cancel its open orders at the exchange; cut the key at the exchange where an
API allows it (Binance: a master-account admin key restricts the sub-account key to an unroutable address; Bybit:
the key is made read-only and bound to that address); and in AWS deny every principal but the exempt ones the
GetSecretValue of the key's secret (a Deny statement in the secret's resource policy, removed only by a release).

Every step is recorded as {action, target, started, finished, result, detail}: `done` only when read back and
confirmed, `failed` when it could not be done or confirmed, `not_available` (with the manual step) where no API
exists, `planned` in a dry run. Nothing is assumed done. A release is an operator action that re-checks the key
first: a key still unsafe stays contained."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from keyguard.config import ContainmentSettings
from keyguard.errors import ConfigError, KeyguardError
from keyguard.exchanges.errors import UNKNOWN_ORDER, ExchangeRejected
from keyguard.exchanges.inventory import Inventory, InventoryKey, SecretSource, load_inventory
from keyguard.redact import redact_text
from keyguard.store.db import session_scope
from keyguard.store.models import AlertRecord, ContainmentRun, ContainmentStep, FindingRecord, Incident, as_utc

log = logging.getLogger("keyguard.containment")

STATEMENT_ID = "KeyguardContainment"
EVIDENCE_WAIT_S = 1.0
LEFT_TO_A_PERSON = ("change the exchange account's password and 2FA",
                    "check the withdrawal address book and remove what you do not know",
                    "contact the exchange's support if funds moved (give them the withdrawal ids)",
                    "find where the secret leaked before issuing a replacement key")


@dataclass
class Step:
    action: str
    target: str
    started_at: datetime
    finished_at: datetime
    result: str  # done | failed | not_available | planned
    detail: str

    @property
    def ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)

    def line(self) -> str:
        return f"{self.action} {self.target}: {self.result} ({self.ms} ms) {self.detail}".strip()


@dataclass
class Outcome:
    run_pk: int
    resource: str
    action: str
    result: str
    steps: list[Step] = field(default_factory=list)
    incident_pk: int | None = None
    detail: str = ""
    detected_at: float | None = None  # time.time() when the finding's transition reached containment


class StepFailed(Exception):
    """A step that ran and did not succeed, or could not be confirmed."""


class NotAvailable(Exception):
    """No API can do this step here; the message is the manual step to take."""


class ContainmentService:
    """Contains and releases keys of one inventory; automatic containment runs on its own threads."""

    def __init__(self, store: Engine, inventory_path: Path, settings: ContainmentSettings | None = None, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 alerts_queued: Callable[[], None] | None = None) -> None:
        self.store, self.inventory_path = store, inventory_path
        self.settings = settings or ContainmentSettings()
        self.clock = clock
        self.alerts_queued = alerts_queued
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keyguard-contain")
        # Steps run beside a containment's own thread on a pool of their own: a full `_executor` never waits on
        # itself.
        self._steps = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keyguard-contain-step")
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._inventory: tuple[tuple[int, int, int], Inventory] | None = None
        self.finished: list[Outcome] = []  # automatic runs, newest last (what a caller may wait on)

    # -- automatic ------------------------------------------------------------------------------------------
    def consider(self, transitions: list[tuple[str, str, str, str]]) -> None:
        """(kind, rule_id, resource, scope) of a check's transitions: contain the keys whose new finding's rule is
        switched on, each on its own thread, so the check cycle is not held."""
        detected_at = time.time()
        for kind, rule_id, resource, scope in transitions:
            if kind in ("new", "regressed", "waiver_expired") and self.settings.automatic(rule_id):
                self._executor.submit(self._automatic, rule_id, resource, scope, detected_at)

    def _automatic(self, rule_id: str, resource: str, scope: str, detected_at: float) -> None:
        try:
            key = self._key(resource)
            if key is None:
                log.warning("no inventory key is named %s; %s not contained", resource, rule_id)
                return
            active = self.active_run(resource)
            incident_pk = self._incident(scope, rule_id, resource)
            if active is not None:
                self._note(incident_pk, f"{rule_id}: already contained by run #{active.pk}")
                return
            outcome = self.contain(key, trigger=rule_id, actor="keyguard", incident_pk=incident_pk)
            outcome.detected_at = detected_at
            self.finished.append(outcome)
        except Exception as exc:  # a crash here must be seen, not lost in a thread
            log.error("automatic containment of %s failed: %s", resource, redact_text(f"{type(exc).__name__}: {exc}"))

    def stop(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)
        self._steps.shutdown(wait=True, cancel_futures=False)

    # -- contain ----------------------------------------------------------------------------------------------
    def contain(self, key: InventoryKey | str, *, trigger: str, actor: str, dry_run: bool = False,
                incident_pk: int | None = None) -> Outcome:
        key = self.key_named(key)
        with self._key_lock(key.resource):
            now = self.clock()
            with session_scope(self.store) as session:
                run = ContainmentRun(resource=key.resource, action="contain", trigger=redact_text(trigger)[:300],
                                     actor=actor, dry_run=dry_run, incident_pk=incident_pk, started_at=now)
                session.add(run)
                session.flush()
                run_pk = run.pk or 0
            undo: dict[str, Any] = {}
            kill = self._step("kill_switch", self._workers_target(key), dry_run,
                              lambda: self._kill(key, trigger, undo), "engage the kill switch of every worker", key)
            # The secret is blocked alongside the exchange steps (it needs neither); the orders are cancelled with
            # the key before the key is cut.
            block = self._steps.submit(
                self._step, "block_secret", self._secret_target(key), dry_run, lambda: self._block(key, undo),
                "deny GetSecretValue on the key's secret to every principal but the exempt ones", key)
            pack: dict[str, Any] = {}
            own_read = threading.Event()  # set once the records only the key itself can read are in
            evidence = self._steps.submit(
                self._step, "evidence", key.resource, dry_run, lambda: self._evidence(key, pack, own_read),
                "read the account's last 24 h (orders, trades, withdrawals, transfers) and the key's state", key)
            cancel = self._step("cancel_open_orders", key.resource, dry_run, lambda: self._cancel(key),
                                "cancel every open order of the key", key)
            # The evidence is read with the key itself, so the cut waits for it, a moment at most: revoke first.
            if not dry_run and not own_read.wait(EVIDENCE_WAIT_S):
                log.warning("evidence for %s not read within %.1fs: cutting the key anyway", key.resource,
                            EVIDENCE_WAIT_S)
            cut = self._step("cut_key", key.resource, dry_run, lambda: self._cut(key, undo),
                             f"cut the key at the exchange (Binance, OKX: bound to {self.settings.unroutable_ip} by "
                             "the master account; Bybit: deleted)", key)
            steps = [kill, cancel, cut, block.result(), evidence.result()]
            if pack:
                with session_scope(self.store) as session:
                    stored = session.get(ContainmentRun, run_pk)
                    if stored is not None:
                        stored.evidence = pack
                        session.add(stored)
            return self._finish(run_pk, key, "contain", steps, undo, incident_pk, dry_run)

    def _step(self, action: str, target: str, dry_run: bool, do: Callable[[], str], plan: str,
              key: InventoryKey | None = None) -> Step:
        started = self.clock()
        if dry_run:
            missing = self._unavailable(action, key) if key is not None else None
            if missing is not None:
                return Step(action, target, started, self.clock(), "not_available", missing)
            return Step(action, target, started, self.clock(), "planned", f"would {plan}")
        try:
            detail, result = do(), "done"
        except NotAvailable as exc:
            detail, result = str(exc), "not_available"
        except (StepFailed, KeyguardError) as exc:
            detail, result = str(exc), "failed"
        except Exception as exc:  # anything unexpected is a failed step, never a done one
            detail, result = f"{type(exc).__name__}: {exc}", "failed"
        step = Step(action, target, started, self.clock(), result, redact_text(detail)[:600])
        (log.info if result == "done" else log.warning)("containment %s", step.line())
        return step

    def _unavailable(self, action: str, key: InventoryKey) -> str | None:
        """What a dry run can tell without a call: the steps this key's configuration cannot do, and the manual
        step instead."""
        exchange = key.exchange.lower()
        admin = key.containment.admin if key.containment else None
        if action == "kill_switch" and not key.workers:
            return "no worker is linked to this key (keys[].workers): stop every process that trades with it by hand"
        if action in ("cancel_open_orders", "evidence") and exchange != "binance":
            return f"do it in {key.exchange}'s web interface (Keyguard does it on Binance only, for now)"
        if action == "cut_key" and exchange == "binance" and (admin is None or not admin.sub_account_email):
            return ("no Binance API lets a key restrict or delete itself: delete the key in Binance's API Management "
                    "(or give the inventory a master-account admin key: keys[].containment.admin)")
        if action == "cut_key" and exchange == "okx" and (admin is None or not admin.sub_account):
            return "no OKX API lets a key restrict or delete itself: delete it in OKX's API management"
        if action == "cut_key" and exchange not in ("binance", "bybit", "okx"):
            return f"delete the key in {key.exchange}'s API management page"
        if action == "block_secret" and key.credentials.aws_secret is None:
            return "the secret is not in Secrets Manager: remove it from the host and restart the workers"
        return None

    def _finish(self, run_pk: int, key: InventoryKey, action: str, steps: list[Step], undo: dict[str, Any],
                incident_pk: int | None, dry_run: bool, refused: str | None = None) -> Outcome:
        results = {s.result for s in steps}
        if refused is not None:
            result = "refused"
        elif dry_run:
            result = "planned"
        elif "failed" in results:
            result = "partial" if "done" in results else "failed"
        else:
            result = "done"
        with session_scope(self.store) as session:
            run = session.get(ContainmentRun, run_pk)
            assert run is not None
            run.finished_at, run.result = self.clock(), result
            run.undo = {**run.undo, **undo}
            session.add(run)
            for s in steps:
                session.add(ContainmentStep(run_pk=run_pk, action=s.action, target=s.target, started_at=s.started_at,
                                            finished_at=s.finished_at, result=s.result, detail=s.detail))
            incident = session.get(Incident, incident_pk) if incident_pk else None
            if incident is not None and not dry_run:
                from keyguard.incidents.lifecycle import add_event

                for s in steps:
                    add_event(session, incident, s.finished_at, action, run.actor, s.line())
                if refused:
                    add_event(session, incident, self.clock(), action, run.actor, f"refused: {refused}")
                session.add(self._alert(session, incident, key, action, result, steps, refused))
        if incident_pk and self.alerts_queued is not None and not dry_run:
            self.alerts_queued()
        return Outcome(run_pk, key.resource, action, result, steps, incident_pk, refused or "")

    def _alert(self, session: Any, incident: Incident, key: InventoryKey, action: str, result: str,
               steps: list[Step], refused: str | None) -> AlertRecord:
        finding = session.exec(select(FindingRecord).where(FindingRecord.scope == incident.scope,
                                                           FindingRecord.fingerprint == incident.fingerprint)).first()
        verb = {"contain": "CONTAINED" if result == "done" else "CONTAINMENT " + result.upper(),
                "release": "RELEASED" if result == "done" else "RELEASE " + result.upper()}[action]
        lines = [f"{action} of key {key.id} ({key.resource}): {result}" + (f": {refused}" if refused else "")]
        for label, wanted in (("Done", "done"), ("FAILED, do it by hand", "failed"),
                              ("Not available here, do it by hand", "not_available")):
            chosen = [s for s in steps if s.result == wanted]
            if chosen:
                lines.append(f"{label}:")
                lines += [f"  - {s.action} {s.target}: {s.detail}" for s in chosen]
        if action == "contain":
            lines.append("Left to a person: " + "; ".join(LEFT_TO_A_PERSON) + ".")
            lines.append(f"Release (re-checks the key first): keyguard incident release {key.id} --reason ...")
        title = f"[keyguard] {verb} {incident.severity.upper()} {incident.rule_id} on {incident.resource} " \
                f"(incident #{incident.pk})"
        from keyguard.incidents.lifecycle import active_silences, silence_for

        silence = silence_for(active_silences(session, self.clock()), incident.rule_id, incident.resource)
        return AlertRecord(transition="contained" if action == "contain" else "released", scope=incident.scope,
                           fingerprint=incident.fingerprint, dedup_key=incident.fingerprint, rule_id=incident.rule_id,
                           severity=finding.severity if finding else incident.severity, resource=incident.resource,
                           title=redact_text(title), body=redact_text("\n".join(lines)), created_at=self.clock(),
                           tier=incident.tier, incident_pk=incident.pk, silenced_by=silence.pk if silence else None)

    # -- the steps ----------------------------------------------------------------------------------------------
    def _kill(self, key: InventoryKey, trigger: str, undo: dict[str, Any]) -> str:
        from keyguard.gateway.config import load_trading_config
        from keyguard.worker.killswitch import KillSwitch

        if not key.workers:
            raise NotAvailable("no worker is linked to this key (keys[].workers in the inventory): stop every "
                               "process that trades with it by hand")
        engaged, failed, was = [], [], []
        for path in key.workers:
            try:
                switch = KillSwitch(load_trading_config(path).kill_switch_path)
                if switch.engaged:
                    was.append(str(switch.path))
                switch.set(True, f"containment of {key.resource}: {trigger}", by="keyguard-containment")
                if not KillSwitch(switch.path).engaged:  # read back by a fresh reader, as another process would
                    raise StepFailed(f"{switch.path} does not read back as engaged")
                engaged.append(str(switch.path))
            except (KeyguardError, StepFailed, OSError) as exc:
                failed.append(f"{path}: {exc}")
        undo["kill_switches"] = [p for p in engaged if p not in was]  # a release lifts only what it engaged
        if failed:
            raise StepFailed(f"engaged {len(engaged)}, failed {len(failed)}: {'; '.join(failed)}")
        return f"engaged and read back: {', '.join(engaged)}"

    def _evidence(self, key: InventoryKey, pack: dict[str, Any], own_read: threading.Event) -> str:
        from keyguard.incidents.evidence import read_evidence

        try:
            if key.exchange.lower() != "binance":
                raise NotAvailable(f"export the account's orders, trades, withdrawals and transfers from "
                                   f"{key.exchange}'s web interface (Keyguard reads them on Binance only, for now)")
            with self._adapter(key, key.credentials) as adapter:
                pack.update(read_evidence(adapter, key, self.clock()))
        finally:
            own_read.set()
        # Then, with the key being cut meanwhile, every other key of the inventory at the exchange, each with its own
        # credentials: what it may do now, its IP binding, when it was made (Binance reports no last use).
        pack["other_keys"] = [self._key_state(other) for other in self.inventory().keys
                              if other.resource != key.resource and other.exchange.lower() == key.exchange.lower()]
        counts = pack["counts"]
        return (f"{counts['orders']} orders ({counts['foreign_orders']} foreign), {counts['trades']} trades, "
                f"{counts['withdrawals']} withdrawals, {counts['transfers']} transfers; kept with the run "
                "(keyguard incident evidence N)")

    def _key_state(self, key: InventoryKey) -> dict[str, Any]:
        try:
            with self._adapter(key, key.credentials) as adapter:
                reported = adapter.api_restrictions()
            return {"id": key.id, "resource": key.resource, "reported": reported,
                    "last_used": "not reported by the exchange"}
        except Exception as exc:  # one unreadable key is itself evidence, never a lost pack
            return {"id": key.id, "resource": key.resource, "error": redact_text(f"{type(exc).__name__}: {exc}")}

    def _cancel(self, key: InventoryKey) -> str:
        if key.exchange.lower() != "binance":
            raise NotAvailable(f"cancel every open order of the key in {key.exchange}'s web interface (Keyguard "
                               "cancels on Binance only, for now)")
        with self._adapter(key, key.credentials) as adapter:
            before = adapter.open_orders()
            symbols = sorted({str(o.get("symbol")) for o in before if isinstance(o, dict)})
            for symbol in symbols:
                try:
                    adapter.cancel_open_orders(symbol)
                except ExchangeRejected as exc:
                    # -2011: nothing left open on the symbol (filled or cancelled since the first read). The
                    # read-back below, not this answer, decides whether the step is done.
                    if exc.code != UNKNOWN_ORDER:
                        raise
            after = adapter.open_orders()
        if after:
            raise StepFailed(f"{len(after)} order(s) still open after cancelling on {', '.join(symbols)}")
        if not before:
            return "no open orders (read back: none open)"
        return f"cancelled {len(before)} open order(s) on {', '.join(symbols)}; read back: none open"

    def _cut(self, key: InventoryKey, undo: dict[str, Any]) -> str:
        exchange, ip = key.exchange.lower(), self.settings.unroutable_ip
        admin = key.containment.admin if key.containment else None
        if exchange == "binance":
            if admin is None or not admin.sub_account_email:
                raise NotAvailable("no Binance API lets a key restrict or delete itself: delete the key in Binance's "
                                   "API Management now (or give the inventory a master-account admin key and the "
                                   "sub-account's email: keys[].containment.admin)")
            with self._adapter(key, admin.credentials) as adapter:
                api_key = key.credentials.load().api_key
                query = {"email": admin.sub_account_email, "subAccountApiKey": api_key}
                before = adapter.sub_account_ip_restriction(admin.sub_account_email, api_key)
                undo["binance_ip_list"] = list(before.get("ipList") or [])
                undo["binance_ip_restrict"] = str(before.get("ipRestrict", "false")).lower() == "true"
                _binance_restrict(adapter, query, True, [ip])
                after = adapter.sub_account_ip_restriction(admin.sub_account_email, api_key)
            if list(after.get("ipList") or []) != [ip] or str(after.get("ipRestrict")).lower() != "true":
                raise StepFailed(f"the master account reads back {after.get('ipList')!r}, not [{ip}]")
            return (f"bound to {ip} only by the master account (was {undo['binance_ip_list'] or 'unrestricted'}); "
                    "read back")
        if exchange == "okx":
            if admin is None or not admin.sub_account:
                raise NotAvailable("no OKX API lets a key restrict or delete itself: delete it in OKX's API management "
                                   "now (or give the inventory the master account's admin key and the sub-account's "
                                   "name: keys[].containment.admin.sub_account)")
            api_key = key.credentials.load().api_key
            with self._adapter(key, admin.credentials) as adapter:
                client = adapter.host_client
                query = {"subAcct": admin.sub_account, "apiKey": api_key}
                before = (adapter.call(client, "GET", "/api/v5/users/subaccount/apikey",
                                       lambda: client.private_get_users_subaccount_apikey(query), query)
                          .get("data") or [{}])[0]
                undo["okx"] = {"perm": before.get("perm"), "ip": before.get("ip", "")}
                body = {**query, "perm": "read_only", "ip": ip}
                adapter.call(client, "POST", "/api/v5/users/subaccount/modify-apikey",
                             lambda: client.private_post_users_subaccount_modify_apikey(body), body)
                after = (adapter.call(client, "GET", "/api/v5/users/subaccount/apikey",
                                      lambda: client.private_get_users_subaccount_apikey(query), query)
                         .get("data") or [{}])[0]
            if after.get("perm") != "read_only" or after.get("ip") != ip:
                raise StepFailed(f"the master account reads back perm={after.get('perm')!r} ip={after.get('ip')!r}")
            return (f"made read-only and bound to {ip} by the master account (was perm={undo['okx']['perm']}, "
                    f"ip={undo['okx']['ip'] or 'unbound'}); read back")
        if exchange == "bybit":
            # A read-only Bybit key may still update itself back: a stolen one is deleted (revoke first). The master's
            # admin key deletes a sub-account's key (delete-sub-api); without one, the key deletes itself, which
            # Bybit allows only a key holding a wallet permission (the dangerous kind).
            api_key = key.credentials.load().api_key
            try:
                how = self._bybit_delete(key, admin, api_key)
            except KeyguardError as exc:
                raise StepFailed(f"{exc}; delete the key in Bybit's API management now") from None
            with self._adapter(key, key.credentials) as adapter:
                client = adapter.host_client
                try:
                    adapter.call(client, "GET", "/v5/user/query-api", lambda: client.private_get_v5_user_query_api())
                except KeyguardError as exc:
                    undo["bybit_deleted"] = True
                    return f"{how} at Bybit; read back: the key is refused ({exc.__class__.__name__})"
            raise StepFailed("Bybit still answers to the key after its deletion")
        raise NotAvailable(f"no {key.exchange} API to restrict or delete a key is known: delete it in the exchange's "
                           "API management page now")

    def _bybit_delete(self, key: InventoryKey, admin: Any, api_key: str) -> str:
        with self._adapter(key, admin.credentials if admin else key.credentials) as adapter:
            client = adapter.host_client
            if admin is not None:
                body = {"apikey": api_key}
                adapter.call(client, "POST", "/v5/user/delete-sub-api",
                             lambda: client.private_post_v5_user_delete_sub_api(body), body)
                how = "deleted by the master account"
            else:
                me = adapter.call(client, "GET", "/v5/user/query-api",
                                  lambda: client.private_get_v5_user_query_api()).get("result") or {}
                if me.get("isMaster") is False:
                    adapter.call(client, "POST", "/v5/user/delete-sub-api",
                                 lambda: client.private_post_v5_user_delete_sub_api({}), {})
                else:
                    adapter.call(client, "POST", "/v5/user/delete-api",
                                 lambda: client.private_post_v5_user_delete_api({}), {})
                how = "deleted by itself"
        return how

    def _block(self, key: InventoryKey, undo: dict[str, Any]) -> str:
        secret = key.credentials.aws_secret
        if secret is None:
            where = f"file {key.credentials.file}" if key.credentials.file else "environment variables"
            raise NotAvailable(f"the secret is in {where}, which no policy can lock: remove it from the host and "
                               "restart the workers")
        client = secret._client()
        try:
            current = json.loads(client.get_resource_policy(SecretId=secret.secret_id).get("ResourcePolicy") or "{}")
        except Exception as exc:
            raise StepFailed(f"could not read the resource policy of {secret.secret_id}: {_aws_error(exc)}") from None
        statements = [s for s in current.get("Statement", []) if s.get("Sid") != STATEMENT_ID]
        deny: dict[str, Any] = {"Sid": STATEMENT_ID, "Effect": "Deny", "Principal": "*",
                                "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
        if self.settings.aws_exempt_principals:
            deny["Condition"] = {"ArnNotEquals": {"aws:PrincipalArn": list(self.settings.aws_exempt_principals)}}
        policy = {"Version": current.get("Version", "2012-10-17"), "Statement": [*statements, deny]}
        try:
            client.put_resource_policy(SecretId=secret.secret_id, ResourcePolicy=json.dumps(policy),
                                       BlockPublicPolicy=False)
            back = json.loads(client.get_resource_policy(SecretId=secret.secret_id).get("ResourcePolicy") or "{}")
        except Exception as exc:
            raise StepFailed(f"could not write the deny statement on {secret.secret_id}: {_aws_error(exc)}") from None
        if not any(s.get("Sid") == STATEMENT_ID and s.get("Effect") == "Deny" for s in back.get("Statement", [])):
            raise StepFailed(f"the deny statement does not read back on {secret.secret_id}")
        undo["aws_secret"] = {"secret_id": secret.secret_id, "region": secret.region,
                              "endpoint_url": secret.endpoint_url}
        exempt = ", ".join(self.settings.aws_exempt_principals) or "none"
        return f"GetSecretValue denied on {secret.secret_id} (exempt: {exempt}); read back"

    # -- release ------------------------------------------------------------------------------------------------
    def release(self, key: InventoryKey | str, *, reason: str, actor: str,
                recheck: Callable[[InventoryKey, datetime], list[str]]) -> Outcome:
        """Lift the containment of `key` after `recheck` (the key's open problems at the exchange, now) finds
        nothing. Activity seen before the containment is taken as reviewed by this release; anything seen since,
        or any other problem, refuses it and everything stays as it is."""
        reason = redact_text(reason.strip())
        if not reason:
            raise ConfigError("a release needs a reason (who checked what)")
        if isinstance(key, str) and self._key(key) is None:
            return self._release_retired(key, reason, actor)
        key = self.key_named(key)
        with self._key_lock(key.resource):
            active = self.active_run(key.resource)
            if active is None:
                raise ConfigError(f"key {key.id} ({key.resource}) is not contained")
            now = self.clock()
            with session_scope(self.store) as session:
                run = ContainmentRun(resource=key.resource, action="release", trigger=reason[:300], actor=actor,
                                     incident_pk=active.incident_pk, started_at=now)
                session.add(run)
                session.flush()
                run_pk = run.pk or 0
            from keyguard.checks.activity import ActivityLedger

            ledger = ActivityLedger(self.store)
            undo = dict(active.undo)
            # The key is re-checked from the host as it will be used: a cut key is restored first, and cut again if
            # the re-check finds it unsafe.
            steps = [self._step("restore_key", key.resource, False, lambda: self._restore(key, undo), "")]
            started = self.clock()
            try:
                problems = list(recheck(key, as_utc(active.started_at)))
            except Exception as exc:  # a re-check that could not run is not a clean one
                problems = [f"the re-check could not run: {redact_text(f'{type(exc).__name__}: {exc}')}"]
            since = ledger.pending(key.resource, after=as_utc(active.started_at))
            problems += [f"{e.kind} {e.ref} seen at the exchange after the containment started" for e in since]
            steps.append(Step("recheck", key.resource, started, self.clock(), "failed" if problems else "done",
                              "; ".join(problems)[:600] if problems else "no open problem at the exchange"))
            if problems:
                if steps[0].result == "done":
                    recut: dict[str, Any] = {}
                    steps.append(self._step("cut_key", key.resource, False, lambda: self._cut(key, recut), ""))
                return self._finish(run_pk, key, "release", steps, {}, active.incident_pk, False,
                                    refused="the key is still unsafe: " + "; ".join(problems)[:500])
            steps.append(self._step("clear_activity", key.resource, False,
                                    lambda: f"{ledger.clear(key.resource, as_utc(active.started_at), actor, now)} "
                                            "event(s) seen before the containment marked reviewed", ""))
            steps.append(self._step("lift_kill_switch", self._workers_target(key), False,
                                    lambda: self._unkill(undo, reason, actor), ""))
            steps.append(self._step("unblock_secret", self._secret_target(key), False,
                                    lambda: self._unblock(undo), ""))
            return self._finish(run_pk, key, "release", steps, {}, active.incident_pk, False)

    def _release_retired(self, name: str, reason: str, actor: str) -> Outcome:
        """A contained key that is no longer in the inventory (replaced): nothing to re-check, so its kill switches
        and its secret's block are lifted and its exchange-side cut stays (the key is retired)."""
        with session_scope(self.store) as session:
            runs = session.exec(select(ContainmentRun.resource).distinct()).all()
        resource = next((r for r in runs if r == name or r.endswith("/" + name)), None)
        active = self.active_run(resource) if resource else None
        if resource is None or active is None:
            raise ConfigError(f"no key {name!r} in {self.inventory_path}, and no containment of it in force")
        exchange, _, key_id = resource.partition("/")
        retired = InventoryKey(id=key_id, exchange=exchange,
                               credentials=SecretSource(api_key_env="RETIRED", secret_env="RETIRED"))
        with session_scope(self.store) as session:
            run = ContainmentRun(resource=resource, action="release", trigger=reason[:300], actor=actor,
                                 incident_pk=active.incident_pk, started_at=self.clock())
            session.add(run)
            session.flush()
            run_pk = run.pk or 0
        undo = dict(active.undo)
        steps = [Step("recheck", resource, self.clock(), self.clock(), "not_available",
                      "the key is no longer in the inventory (retired): its exchange-side cut stays"),
                 self._step("lift_kill_switch", ",".join(undo.get("kill_switches") or []) or "(none)", False,
                            lambda: self._unkill(undo, reason, actor), ""),
                 self._step("unblock_secret", str((undo.get("aws_secret") or {}).get("secret_id", "(none)")), False,
                            lambda: self._unblock(undo), "")]
        return self._finish(run_pk, retired, "release", steps, {}, active.incident_pk, False)

    def _unkill(self, undo: dict[str, Any], reason: str, actor: str) -> str:
        from keyguard.worker.killswitch import KillSwitch

        paths = undo.get("kill_switches") or []
        if not paths:
            raise NotAvailable("this containment engaged no kill switch (none linked, or engaged already): "
                               "release those by hand if they should trade")
        for path in paths:
            KillSwitch(path).set(False, f"released by {actor}: {reason}", by=actor)
            if KillSwitch(path).engaged:
                raise StepFailed(f"{path} still reads engaged")
        return f"released: {', '.join(paths)}"

    def _restore(self, key: InventoryKey, undo: dict[str, Any]) -> str:
        if "binance_ip_list" in undo:
            admin = key.containment.admin if key.containment else None
            if admin is None or not admin.sub_account_email:
                raise StepFailed("the admin key is no longer in the inventory: restore the key's IP list by hand")
            ips = undo["binance_ip_list"]
            with self._adapter(key, admin.credentials) as adapter:
                query = {"email": admin.sub_account_email, "subAccountApiKey": key.credentials.load().api_key}
                _binance_restrict(adapter, query, bool(undo.get("binance_ip_restrict")), ips)
            return f"IP list restored to {ips or 'unrestricted'}"
        if "okx" in undo:
            admin = key.containment.admin if key.containment else None
            if admin is None or not admin.sub_account:
                raise StepFailed("the admin key is no longer in the inventory: restore the key at OKX by hand")
            previous = undo["okx"]
            with self._adapter(key, admin.credentials) as adapter:
                client = adapter.host_client
                body = {"subAcct": admin.sub_account, "apiKey": key.credentials.load().api_key,
                        "perm": previous.get("perm") or "read_only", "ip": previous.get("ip") or ""}
                adapter.call(client, "POST", "/api/v5/users/subaccount/modify-apikey",
                             lambda: client.private_post_users_subaccount_modify_apikey(body), body)
            return f"restored perm={body['perm']} ip={body['ip'] or 'unbound'}"
        if undo.get("bybit_deleted"):
            raise NotAvailable("the key was deleted at Bybit: issue a new key and put it in the inventory")
        raise NotAvailable("the containment did not change the key at the exchange")

    def _unblock(self, undo: dict[str, Any]) -> str:
        from keyguard.secrets.aws import AwsSecret

        if not undo.get("aws_secret"):
            raise NotAvailable("the containment did not block a secret")
        secret = AwsSecret(**undo["aws_secret"])
        client = secret._client()
        current = json.loads(client.get_resource_policy(SecretId=secret.secret_id).get("ResourcePolicy") or "{}")
        statements = [s for s in current.get("Statement", []) if s.get("Sid") != STATEMENT_ID]
        if statements:
            client.put_resource_policy(SecretId=secret.secret_id,
                                       ResourcePolicy=json.dumps({**current, "Statement": statements}))
        else:
            client.delete_resource_policy(SecretId=secret.secret_id)
        back = json.loads(client.get_resource_policy(SecretId=secret.secret_id).get("ResourcePolicy") or "{}")
        if any(s.get("Sid") == STATEMENT_ID for s in back.get("Statement", [])):
            raise StepFailed(f"the deny statement still reads back on {secret.secret_id}")
        return f"deny statement removed from {secret.secret_id} (read back)"

    # -- helpers ------------------------------------------------------------------------------------------------
    def inventory(self) -> Inventory:
        """The inventory, parsed again only when its file changed: every step and adapter of a containment asks."""
        stat = self.inventory_path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._guard:
            if self._inventory is None or self._inventory[0] != stamp:
                self._inventory = (stamp, load_inventory(self.inventory_path))
            return self._inventory[1]

    def key_named(self, key: InventoryKey | str) -> InventoryKey:
        if isinstance(key, InventoryKey):
            return key
        found = self._key(key)
        if found is None:
            ids = ", ".join(k.id for k in self.inventory().keys)
            raise ConfigError(f"no key {key!r} in {self.inventory_path} (keys: {ids})")
        return found

    def _key(self, name: str) -> InventoryKey | None:
        return next((k for k in self.inventory().keys if name in (k.id, k.resource)), None)

    @contextmanager
    def _key_lock(self, resource: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(resource, threading.Lock())
        with lock:
            yield

    @contextmanager
    def _adapter(self, key: InventoryKey, credentials_source: Any) -> Iterator[Any]:
        """An adapter with `credentials_source`'s key, on the host's shared budget (the worker's headroom: a
        containment must not wait behind the inspections' share)."""
        from keyguard.exchanges import adapter_for, sandbox_adapter_kwargs
        from keyguard.exchanges.budget import SharedRateLimiter
        from keyguard.exchanges.budget_store import default_budget_path, open_budget_store

        inventory = self.inventory()
        exchange = key.exchange.lower()
        base = inventory.exchange_urls.get(exchange)
        source = inventory.probe.source_ip
        ip = source or "127.0.0.1"
        limiter = SharedRateLimiter(open_budget_store("file", default_budget_path(ip, "file")), egress_ip=ip,
                                    exchange=exchange, default_deadline_s=self.settings.request_timeout_s)
        adapter = adapter_for(exchange, credentials_source.load(), source_ip=source, limiter=limiter,
                              timeout_ms=int(self.settings.request_timeout_s * 1000),
                              **(dict(sandbox_adapter_kwargs(exchange, base)) if base else {}))
        adapter.deadline = time.time() + 4 * self.settings.request_timeout_s
        try:
            yield adapter
        finally:
            adapter.close()

    def _workers_target(self, key: InventoryKey) -> str:
        return ",".join(str(p) for p in key.workers) or "(no worker linked)"

    def _secret_target(self, key: InventoryKey) -> str:
        secret = key.credentials.aws_secret
        return secret.secret_id if secret else "(secret not in Secrets Manager)"

    def active_run(self, resource: str) -> ContainmentRun | None:
        """The key's containment still in force: its last real contain not followed by a successful release."""
        with session_scope(self.store) as session:
            runs = session.exec(select(ContainmentRun).where(ContainmentRun.resource == resource,
                                                             col(ContainmentRun.dry_run).is_(False))
                                .order_by(col(ContainmentRun.pk).desc())).all()
            for run in runs:
                if run.action == "release" and run.result in ("done", "partial"):
                    return None
                if run.action == "contain" and run.result != "running":
                    session.expunge(run)
                    return run
        return None

    def latest_incident(self, resource: str) -> int | None:
        """The newest active incident on the key, which a containment by hand reports to."""
        with session_scope(self.store) as session:
            incident = session.exec(select(Incident).where(Incident.resource == resource,
                                                           col(Incident.status).in_(("open", "acknowledged")))
                                    .order_by(col(Incident.pk).desc())).first()
            return incident.pk if incident else None

    def _incident(self, scope: str, rule_id: str, resource: str) -> int | None:
        with session_scope(self.store) as session:
            incident = session.exec(select(Incident).where(Incident.scope == scope, Incident.rule_id == rule_id,
                                                           Incident.resource == resource,
                                                           col(Incident.status).in_(("open", "acknowledged")))).first()
            return incident.pk if incident else None

    def _note(self, incident_pk: int | None, detail: str) -> None:
        if incident_pk is None:
            return
        from keyguard.incidents.lifecycle import add_event

        with session_scope(self.store) as session:
            incident = session.get(Incident, incident_pk)
            if incident is not None:
                add_event(session, incident, self.clock(), "contain", "keyguard", detail)


def _binance_restrict(adapter: Any, query: dict[str, str], restricted: bool, ips: list[str]) -> None:
    """Set a sub-account key's IP restriction from its master account (status 2: only `ips`; 1: unrestricted)."""
    adapter.restrict_sub_account_key(query["email"], query["subAccountApiKey"], restricted, ips)


def _aws_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}".strip(": ")
    return type(exc).__name__


def key_recheck(engine: Any, store: Engine, inventory_path: Path, checks: Any = None
                ) -> Callable[[InventoryKey, datetime], list[str]]:
    """The release's re-check: the key inspected at its exchange now (and its account's activity, leaving out what
    was seen before the containment, which the release reviews), through the policy set. Unsafe is a critical
    finding on the key, or a key that could not be verified."""
    from keyguard.checks.activity import ActivityLedger
    from keyguard.config import ChecksSettings
    from keyguard.exchanges.inspector import KeyInspector, unverified_reason
    from keyguard.exchanges.inventory import keys_document

    def recheck(key: InventoryKey, reviewed_before: datetime) -> list[str]:
        settings = checks or ChecksSettings()
        inventory = load_inventory(inventory_path)
        single = inventory.model_copy(update={"keys": [key]})
        inspector = KeyInspector(settings.budget, concurrency=1, request_timeout_s=settings.request_timeout_s)
        try:
            [state] = inspector.inspect(single)
        finally:
            inspector.close()
        problems = []
        reason = unverified_reason(state)
        if reason is not None:
            problems.append(f"the key could not be verified: {reason}")
        if key.activity is not None and state.activity_raw is not None:
            state.activity = ActivityLedger(store).document(key, state.activity_raw, datetime.now(UTC),
                                                            reviewed_before=reviewed_before)
        for finding in engine.evaluate(keys_document([state], inventory.hosts), source="keys"):
            if str(finding.severity) == "critical" and (finding.resource == key.resource
                                                        or finding.resource.startswith(key.resource + "/")):
                problems.append(f"{finding.id}: {finding.message}")
        return problems

    return recheck
