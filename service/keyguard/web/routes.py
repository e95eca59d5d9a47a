"""The dashboard's pages and forms under /ui, behind the API's roles: a session cookie opened with an API token
(or a one-time login link), a CSRF token on every form, operator actions audited like the API's."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from keyguard.api.access import Role
from keyguard.api.audit_log import OperatorAction
from keyguard.api.deps import ContextDep, SessionDep
from keyguard.errors import ConfigError, KeyguardError
from keyguard.incidents import lifecycle
from keyguard.incidents.playbooks import Playbook, playbook_for
from keyguard.store.models import ContainmentRun, ContainmentStep, Incident, Silence
from keyguard.web import sessions, views
from keyguard.web.sessions import LOGIN_CSRF_COOKIE, SESSION_COOKIE, WebPrincipal

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
TEMPLATES.env.globals["severities"] = views.SEVERITIES
TEMPLATES.env.filters["num"] = views.number_text
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
SILENCE_CHOICES_H = (1, 4, 24)
LIVE_REFRESH_S = 3

router = APIRouter(prefix="/ui", include_in_schema=False)


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _bundle_value(context: Any, *path: str) -> Any:
    bundle = getattr(context.service.engine, "bundle", None)
    value: Any = bundle.data if bundle is not None else None
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


# -- who is asking ----------------------------------------------------------------------------------------------
def optional_web_principal(request: Request, context: ContextDep) -> WebPrincipal | None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    try:
        return sessions.session_principal(context.service.store, session_id, context.service.clock())
    except SQLAlchemyError:
        raise HTTPException(status_code=503, detail="the store is unreachable, so the session cannot be "
                                                    "checked") from None


OptionalWebDep = Annotated[WebPrincipal | None, Depends(optional_web_principal)]


def page_principal(principal: OptionalWebDep) -> WebPrincipal:
    """A page asked for without a session goes to the login form."""
    if principal is None:
        raise HTTPException(status_code=303, headers={"Location": "/ui/login"})
    return principal


PageDep = Annotated[WebPrincipal, Depends(page_principal)]


def fragment_principal(principal: OptionalWebDep) -> WebPrincipal:
    """A live fragment without a session is a 401, which the page's script turns into the login form."""
    if principal is None:
        raise HTTPException(status_code=401, detail="no session: log in again")
    return principal


FragmentDep = Annotated[WebPrincipal, Depends(fragment_principal)]


def form_principal(principal: OptionalWebDep, csrf: Annotated[str, Form()] = "") -> WebPrincipal:
    """Every form: a session, and the CSRF token of that session in the form (a forged form cannot know it)."""
    if principal is None:
        raise HTTPException(status_code=401, detail="no session: log in again")
    if not secrets.compare_digest(principal.csrf, csrf):
        raise HTTPException(status_code=403, detail="the form's CSRF token is missing or wrong: reload the page "
                                                    "and submit it again")
    return principal


FormDep = Annotated[WebPrincipal, Depends(form_principal)]


def operator_form(request: Request, principal: FormDep, context: ContextDep) -> OperatorAction:
    """An operator action from a form, audited as the API's are (the same action names, the same log)."""
    route = request.scope["route"]
    target = ",".join(str(v) for v in request.path_params.values()) or route.path
    action = OperatorAction(context.service.store, principal.principal.name, principal.principal.role.value,
                            route.name, target)
    if not principal.may_operate:
        action.refused(f"role {principal.principal.role.value} may not {route.name} (dashboard)")
        raise HTTPException(status_code=403, detail=f"your role is {principal.principal.role.value}; "
                                                    f"{route.name} needs the {Role.operator.value} role")
    return action


OperatorFormDep = Annotated[OperatorAction, Depends(operator_form)]


def _problem(request: Request, status_code: int, message: str, principal: WebPrincipal | None = None) -> HTMLResponse:
    return render(request, "error.html", status_code, me=principal, message=message)


# -- login and logout -------------------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, error: str | None = None) -> HTMLResponse:
    """The token form (and the script that redeems a one-time link from the URL's fragment)."""
    login_csrf = secrets.token_urlsafe(24)
    response = render(request, "login.html", 401 if error else 200, login_csrf=login_csrf, error=error)
    response.set_cookie(LOGIN_CSRF_COOKIE, login_csrf, max_age=600, httponly=True, samesite="strict",
                        secure=_secure(request), path="/ui/login")
    return response


def _login_csrf_ok(request: Request, presented: str) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(expected) and secrets.compare_digest(expected, presented)


def _start_session(request: Request, context: Any, principal: Any) -> Response:
    session_id = sessions.open_session(context.service.store, principal, context.service.clock())
    response = RedirectResponse("/ui/", status_code=303)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=int(sessions.SESSION_LIFETIME.total_seconds()),
                        httponly=True, samesite="strict", secure=_secure(request), path="/ui")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui/login")
    response.headers.update(SECURITY_HEADERS)
    return response


@router.post("/login")
def login(request: Request, context: ContextDep, token: Annotated[str, Form()] = "",
          code: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    """Exchange an API token, or a one-time login link's code, for a session cookie; neither is kept or echoed."""
    if not _login_csrf_ok(request, csrf):
        return login_form(request, error="the login form expired or came from elsewhere: try again")
    now = context.service.clock()
    if code.strip():
        principal = sessions.redeem_login_link(context.service.store, code.strip(), now)
        if principal is None:
            return login_form(request, error="that login link was already used, has expired, or is not one: "
                                             "log in with an API token, or ask for a new link")
    elif token.strip():
        principal = context.tokens.authenticate(token.strip())
        if principal is None:
            return login_form(request, error="that token is not valid, or was revoked")
    else:
        return login_form(request, error="paste an API token (keyguard token create NAME --role viewer)")
    return _start_session(request, context, principal)


@router.post("/logout")
def logout(request: Request, _: FormDep, context: ContextDep) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE, "")
    sessions.end_session(context.service.store, session_id, context.service.clock())
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


# -- overview ---------------------------------------------------------------------------------------------------
def _overview_values(context: Any, session: Any) -> dict[str, Any]:
    now = context.service.clock()
    return {"now": now, "ov": views.overview(session, now, context.service.interval_s)}


@router.get("/")
def overview_page(request: Request, me: PageDep, context: ContextDep, session: SessionDep) -> HTMLResponse:
    """The live part refreshes every few seconds; the chart (minutes per sample) with the page."""
    return render(request, "overview.html", me=me, refresh_s=LIVE_REFRESH_S,
                  findings_chart=views.findings_chart(session, context.service.clock()),
                  **_overview_values(context, session))


@router.get("/fragments/overview")
def overview_fragment(request: Request, me: FragmentDep, context: ContextDep, session: SessionDep) -> HTMLResponse:
    return render(request, "_overview_live.html", me=me, **_overview_values(context, session))


# -- incidents and alerts ---------------------------------------------------------------------------------------
@router.get("/incidents")
def incidents_page(request: Request, me: PageDep, session: SessionDep) -> HTMLResponse:
    rows = session.exec(select(Incident).order_by(col(Incident.pk).desc()).limit(200)).all()
    return render(request, "incidents.html", me=me, incidents=rows)


@router.get("/incidents/{pk}")
def incident_page(request: Request, pk: int, me: PageDep, context: ContextDep, session: SessionDep,
                  status_code: int = 200, error: str | None = None) -> HTMLResponse:
    from keyguard.api.routes.incidents import get_incident

    try:
        detail = get_incident(pk, me.principal, session)
    except HTTPException as exc:
        return _problem(request, exc.status_code, str(exc.detail), me)
    runs = session.exec(select(ContainmentRun).where(ContainmentRun.incident_pk == pk)
                        .order_by(col(ContainmentRun.pk).desc())).all()
    steps: dict[int, list[ContainmentStep]] = {}
    if runs:
        for step in session.exec(select(ContainmentStep).where(col(ContainmentStep.run_pk).in_([r.pk for r in runs]))
                                 .order_by(col(ContainmentStep.pk))):
            steps.setdefault(step.run_pk, []).append(step)
    silence = session.get(Silence, detail.silenced_by) if detail.silenced_by else None
    return render(request, "incident.html", status_code, me=me, incident=detail, runs=runs, steps=steps,
                  alerts=views.alert_lines(session, 100, incident_pk=pk), silence=silence, error=error,
                  can_contain=context.containment is not None, silence_hours=SILENCE_CHOICES_H)


def _incident_error(request: Request, pk: int, me: WebPrincipal, context: Any, exc: KeyguardError,
                    status_code: int) -> HTMLResponse:
    from keyguard.store.db import session_scope

    with session_scope(context.service.store) as session:
        return incident_page(request, pk, me, context, session, status_code=status_code, error=str(exc))


@router.post("/incidents/{pk}/ack", name="incident.ack")
def acknowledge(request: Request, pk: int, operator: OperatorFormDep, me: FormDep, context: ContextDep,
                note: Annotated[str, Form(max_length=300)] = "") -> Response:
    service = context.service
    try:
        incident, changed = lifecycle.acknowledge(service.store, pk, operator.actor, service.clock, note)
    except lifecycle.IncidentError as exc:
        operator.failed(str(exc))
        return _incident_error(request, pk, me, context, exc, exc.status_code)
    if changed and service.alerts_queued is not None:
        service.alerts_queued()
    operator.ok(f"{incident.rule_id} on {incident.resource}: {incident.status}" + ("" if changed else " already")
                + " (dashboard)")
    return RedirectResponse(f"/ui/incidents/{pk}", status_code=303)


@router.post("/incidents/{pk}/resolve", name="incident.resolve")
def resolve(request: Request, pk: int, operator: OperatorFormDep, me: FormDep, context: ContextDep,
            note: Annotated[str, Form(max_length=300)] = "") -> Response:
    service = context.service
    try:
        incident, changed = lifecycle.resolve(service.store, pk, operator.actor, service.clock, note, False)
    except lifecycle.IncidentError as exc:
        operator.failed(str(exc))
        return _incident_error(request, pk, me, context, exc, exc.status_code)
    if changed and service.alerts_queued is not None:
        service.alerts_queued()
    operator.ok(f"{incident.rule_id} on {incident.resource}: {incident.status} (dashboard)")
    return RedirectResponse(f"/ui/incidents/{pk}", status_code=303)


@router.post("/incidents/{pk}/silence", name="silence.add")
def silence(request: Request, pk: int, operator: OperatorFormDep, me: FormDep, context: ContextDep,
            session: SessionDep, hours: Annotated[float, Form(gt=0)], reason: Annotated[str, Form()] = "") -> Response:
    """Silence this incident's rule on its resource for a few hours (the API adds any matcher)."""
    service = context.service
    incident = session.get(Incident, pk)
    if incident is None:
        operator.failed(f"no incident #{pk}")
        return _problem(request, 404, f"no incident #{pk}", me)
    now = service.clock()
    try:
        if not reason.strip():
            raise lifecycle.IncidentError("a silence needs a reason: say why these alerts may wait", 422)
        added = lifecycle.add_silence(service.store, rule=incident.rule_id, resource=incident.resource,
                                      reason=reason, author=operator.actor, ends_at=now + timedelta(hours=hours),
                                      now=now, max_duration_s=context.max_silence_s)
    except lifecycle.IncidentError as exc:
        operator.failed(str(exc))
        return _incident_error(request, pk, me, context, exc, exc.status_code)
    operator.ok(f"#{added.pk} {added.rule} on {added.resource} for {hours:g} h: {added.reason} (dashboard)")
    return RedirectResponse(f"/ui/incidents/{pk}", status_code=303)


@router.post("/incidents/{pk}/contain", name="incident.contain")
def contain(request: Request, pk: int, operator: OperatorFormDep, me: FormDep, context: ContextDep,
            session: SessionDep, reason: Annotated[str, Form()] = "") -> Response:
    """Contain the incident's key, as POST /api/containment/{key}/contain does."""
    incident = session.get(Incident, pk)
    if incident is None:
        operator.failed(f"no incident #{pk}")
        return _problem(request, 404, f"no incident #{pk}", me)
    try:
        if context.containment is None:
            raise lifecycle.IncidentError("this service has no inventory (inventory: keyguard.yaml), so no key to "
                                          "contain", 409)
        if not reason.strip():
            raise lifecycle.IncidentError("a containment needs a reason, for the record", 422)
        key = context.containment.key_named(incident.resource)
        outcome = context.containment.contain(key, trigger=f"{reason.strip()} ({operator.actor})",
                                              actor=operator.actor, incident_pk=pk)
    except KeyguardError as exc:
        operator.failed(str(exc))
        return _incident_error(request, pk, me, context, exc, getattr(exc, "status_code", 422))
    (operator.ok if outcome.result in ("done", "planned") else operator.failed)(
        f"{outcome.result}: " + "; ".join(f"{s.action} {s.result}" for s in outcome.steps))
    return RedirectResponse(f"/ui/incidents/{pk}", status_code=303)


@router.get("/alerts")
def alerts_page(request: Request, me: PageDep, session: SessionDep,
                before: Annotated[int | None, Query(ge=1)] = None) -> HTMLResponse:
    """Newest first, a page at a time."""
    alerts = views.alert_lines(session, views.ALERTS_PER_PAGE, before=before)
    older = alerts[-1].alert.pk if len(alerts) == views.ALERTS_PER_PAGE else None
    return render(request, "alerts.html", me=me, alerts=alerts, older=older)


# -- keys -------------------------------------------------------------------------------------------------------
@router.get("/keys")
def keys_page(request: Request, me: PageDep, context: ContextDep, session: SessionDep,
              page: Annotated[int, Query(ge=1)] = 1) -> HTMLResponse:
    """A page of keys at a time (KEYS_PER_PAGE), by exchange and id."""
    now = context.service.clock()
    max_age = _bundle_value(context, "keys", "rotation", "max_age_days")
    keys, total = views.keys(session, now, max_age, page)
    pages = max(1, -(-total // views.KEYS_PER_PAGE))
    return render(request, "keys.html", me=me, keys=keys, total=total, page=page, pages=pages,
                  max_age_days=max_age)


@router.get("/keys/{resource:path}")
def key_page(request: Request, resource: str, me: PageDep, context: ContextDep, session: SessionDep
             ) -> HTMLResponse:
    now = context.service.clock()
    detail = views.key_detail(session, resource, now, _bundle_value(context, "keys", "rotation", "max_age_days"))
    if detail is None:
        return _problem(request, 404, f"no inspected key {resource!r}: the keys page lists every key Keyguard has "
                                      "inspected", me)
    runs = session.exec(select(ContainmentRun).where(ContainmentRun.resource == resource)
                        .order_by(col(ContainmentRun.pk).desc()).limit(20)).all()
    incidents = session.exec(select(Incident).where(Incident.resource == resource)
                             .order_by(col(Incident.pk).desc()).limit(20)).all()
    playbooks = {f.rule_id: _playbook(f.rule_id) for f in detail.findings}
    return render(request, "key.html", me=me, detail=detail, runs=runs, incidents=incidents, playbooks=playbooks)


def _playbook(rule_id: str) -> Playbook | None:
    try:
        return playbook_for(rule_id)
    except ConfigError:
        return None


# -- the worker -------------------------------------------------------------------------------------------------
def _worker_configs(context: Any) -> list[Path]:
    """Every worker or gateway config the inventory links to a key (keys[].workers), as containment finds them."""
    if context.containment is None:
        return []
    seen: dict[Path, None] = {}
    for key in context.containment.inventory().keys:
        for path in key.workers:
            seen.setdefault(Path(path).resolve(), None)
    return list(seen)


def _workers(context: Any) -> list[views.WorkerView]:
    now = context.service.clock()
    stale = _bundle_value(context, "execution", "live", "heartbeat_max_age_s")
    return [views.worker_view(path, now, float(stale) if stale is not None else 60.0)
            for path in _worker_configs(context)]


@router.get("/worker")
def worker_page(request: Request, me: PageDep, context: ContextDep, session: SessionDep) -> HTMLResponse:
    now = context.service.clock()
    return render(request, "worker.html", me=me, workers=_workers(context), refresh_s=LIVE_REFRESH_S,
                  weight_chart=views.weight_chart(session, now), has_inventory=context.containment is not None)


@router.get("/fragments/worker")
def worker_fragment(request: Request, me: FragmentDep, context: ContextDep) -> HTMLResponse:
    return render(request, "_worker_live.html", me=me, workers=_workers(context))


def _find_worker(context: Any, worker: str) -> views.WorkerView:
    for view in _workers(context):
        if view.name == worker:
            return view
    raise lifecycle.IncidentError(f"no worker named {worker!r} among the inventory's keys[].workers", 404)


@router.get("/worker/kill-switch")
def kill_switch_confirm(request: Request, me: PageDep, context: ContextDep, worker: str, action: str = "engage",
                        bot: str = "") -> HTMLResponse:
    """The confirmation step: what engaging (or releasing) will do, and a reason for the record."""
    if not me.may_operate:
        return _problem(request, 403, f"your role is {me.principal.role.value}; the kill switch needs the "
                                      f"{Role.operator.value} role", me)
    if action not in ("engage", "release"):
        return _problem(request, 422, f"kill switch action {action!r}: say engage or release", me)
    try:
        view = _find_worker(context, worker)
    except lifecycle.IncidentError as exc:
        return _problem(request, exc.status_code, str(exc), me)
    if bot and bot not in view.bots:
        return _problem(request, 404, f"worker {worker} has no bot {bot!r} (bots: {', '.join(view.bots) or 'none'})",
                        me)
    return render(request, "kill_switch_confirm.html", me=me, worker=view, action=action, bot=bot)


@router.post("/worker/kill-switch", name="worker.kill_switch")
def kill_switch(request: Request, operator: OperatorFormDep, me: FormDep, context: ContextDep,
                worker: Annotated[str, Form()], action: Annotated[str, Form()], confirmed: Annotated[str, Form()] = "",
                bot: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "") -> Response:
    """Engage or release a kill switch the way `keyguard gateway kill-switch` does: the switch file every process
    obeys (the gateway cancels the open orders it covers)."""
    from keyguard.gateway.config import GatewayConfig, load_trading_config
    from keyguard.worker.killswitch import KillSwitch

    operator.target = f"{worker}/{bot}" if bot else worker
    try:
        if confirmed != "yes":
            raise lifecycle.IncidentError("confirm on the kill switch's confirmation page", 422)
        if action not in ("engage", "release"):
            raise lifecycle.IncidentError(f"kill switch action {action!r}: say engage or release", 422)
        if not reason.strip():
            raise lifecycle.IncidentError("a kill switch change needs a reason, for the record", 422)
        view = _find_worker(context, worker)
        config = load_trading_config(view.config_path)
        if bot:
            if not isinstance(config, GatewayConfig) or bot not in config.bots:
                raise lifecycle.IncidentError(f"worker {worker} has no bot {bot!r}", 404)
            path = config.bot_kill_switch_path(bot)
        else:
            path = config.kill_switch_path
        switch = KillSwitch(path)
        by = f"web:{operator.actor}"
        state = switch.engage(reason.strip(), by=by) if action == "engage" else switch.release(reason.strip(), by=by)
    except KeyguardError as exc:
        operator.failed(str(exc))
        return _problem(request, getattr(exc, "status_code", 422), str(exc), me)
    operator.ok(f"kill switch of {bot or 'the account'} {'engaged' if state.engaged else 'released'}: "
                f"{reason.strip()} (dashboard)")
    return RedirectResponse("/ui/worker", status_code=303)
