"""The on-call dashboard in Debian's Chromium, against the demo's own running loop: log in, watch the drift arrive
without a reload, acknowledge its incident, engage the kill switch and see the gateway halt, and what a viewer and
a forged form may not do. The tests share one demo and run in file order: the kill switch test comes before the
drift, whose automatic containment engages the same switch."""

from __future__ import annotations

import httpx
from playwright.sync_api import BrowserContext, expect
from sqlmodel import select

from keyguard.api.access import create_token
from keyguard.demo import DemoStack
from keyguard.store.db import session_scope
from keyguard.store.models import AuditEntry, Incident
from tests.web.conftest import log_in_with_link

PAGES = ["/ui/", "/ui/incidents", "/ui/alerts", "/ui/keys", "/ui/keys/binance/bot-exec", "/ui/worker"]


def test_a_login_link_opens_a_session_once_and_leaves_no_code_behind(context: BrowserContext,
                                                                      stack: DemoStack) -> None:
    link = stack.login_link()
    page = context.new_page()
    page.goto(link)
    page.wait_for_url(f"{stack.running.url}/ui/")
    expect(page.get_by_test_id("who")).to_have_text("env (operator)")
    code = link.split("#link=", 1)[1]
    history = page.evaluate("() => [location.href, history.length]")
    assert code not in history[0] and stack.running.api_token not in page.content()
    cookie = next(c for c in context.cookies() if c["name"] == "kg_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] != stack.running.api_token

    other = context.browser.new_context()  # type: ignore[union-attr]
    try:
        again = other.new_page()
        again.goto(link)
        expect(again.get_by_test_id("login-error")).to_contain_text("already used")
        assert "kg_session" not in {c["name"] for c in other.cookies()}
    finally:
        other.close()


def test_a_wrong_token_is_refused_and_a_page_without_a_session_asks_for_one(context: BrowserContext,
                                                                             stack: DemoStack) -> None:
    page = context.new_page()
    page.goto(f"{stack.running.url}/ui/worker")
    page.wait_for_url(f"{stack.running.url}/ui/login")
    page.fill("#token", "kg_not-a-token-at-all-000000000")
    page.click("#token-login button")
    expect(page.get_by_test_id("login-error")).to_contain_text("not valid")
    page.fill("#token", stack.running.api_token)
    page.click("#token-login button")
    page.wait_for_url(f"{stack.running.url}/ui/")
    assert stack.running.api_token not in page.url and stack.running.api_token not in page.content()


def test_engaging_the_kill_switch_after_confirming_halts_the_gateway(context: BrowserContext,
                                                                     stack: DemoStack) -> None:
    page = context.new_page()
    log_in_with_link(page, stack)
    page.goto(f"{stack.running.url}/ui/worker")
    worker = page.get_by_test_id("worker-demo-gateway")
    expect(worker.get_by_test_id("trading-state")).to_have_text("ACTIVE")
    worker.get_by_test_id("kill-switch-engage").click()
    expect(page.locator("h1")).to_contain_text("Engage the kill switch of demo-gateway?")
    page.fill("#reason", "browser test: stop everything")
    page.get_by_test_id("confirm").click()
    page.wait_for_url(f"{stack.running.url}/ui/worker")
    # The page shows what the gateway publishes: HALTED once the gateway has seen the switch.
    expect(worker.get_by_test_id("trading-state")).to_have_text("HALTED", timeout=20_000)
    expect(worker.get_by_test_id("kill-switch-engaged")).to_be_visible()
    expect(worker.get_by_test_id("bot-steady")).to_contain_text("HALTED")
    with session_scope(stack.running.store) as session:
        entry = session.exec(select(AuditEntry).where(AuditEntry.action == "worker.kill_switch")).one()
    assert (entry.actor, entry.result) == ("env", "ok") and "engaged" in entry.detail

    worker.get_by_test_id("kill-switch-release").click()
    page.fill("#reason", "browser test: done")
    page.get_by_test_id("confirm").click()
    expect(worker.get_by_test_id("trading-state")).to_have_text("ACTIVE", timeout=20_000)


def test_the_drift_appears_on_the_overview_without_a_reload_and_its_incident_is_acknowledged(
        context: BrowserContext, stack: DemoStack) -> None:
    page = context.new_page()
    log_in_with_link(page, stack)
    page.evaluate("() => { window.__sameDocument = true; }")
    waiting = page.get_by_test_id("awaiting-ack")
    expect(waiting).not_to_contain_text("KG-KEY-101 on binance/bot-exec")
    stack.drift()
    expect(waiting).to_contain_text("KG-KEY-101 on binance/bot-exec", timeout=30_000)
    assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"

    waiting.get_by_role("link", name="KG-KEY-101 on binance/bot-exec").click()
    expect(page.get_by_test_id("incident-status")).to_have_text("open")
    page.get_by_test_id("ack").click()
    expect(page.get_by_test_id("incident-status")).to_have_text("acknowledged")
    expect(page.get_by_test_id("acknowledged-by")).to_contain_text("by env")
    expect(page.get_by_test_id("timeline")).to_contain_text("acknowledged")
    # Its containment (automatic for a bot key that can withdraw) is on the incident's page too.
    expect(page.locator("body")).to_contain_text("kill_switch")

    page.goto(f"{stack.running.url}/ui/")
    expect(page.get_by_test_id("awaiting-ack")).not_to_contain_text("KG-KEY-101 on binance/bot-exec")
    expect(page.get_by_test_id("acknowledged")).to_contain_text("KG-KEY-101 on binance/bot-exec by env")


def test_a_viewer_sees_no_operator_buttons_and_a_form_without_its_csrf_token_is_refused(
        context: BrowserContext, stack: DemoStack) -> None:
    viewer_token = create_token(stack.running.store, "dashboard-viewer", "viewer")
    with session_scope(stack.running.store) as session:
        incident = session.exec(select(Incident).where(Incident.status == "open")).first()
    assert incident is not None, "the demo opens incidents for legacy-hedge at its first check"
    page = context.new_page()
    page.goto(f"{stack.running.url}/ui/login")
    page.fill("#token", viewer_token)
    page.click("#token-login button")
    page.wait_for_url(f"{stack.running.url}/ui/")
    expect(page.get_by_test_id("who")).to_have_text("dashboard-viewer (viewer)")
    page.goto(f"{stack.running.url}/ui/incidents/{incident.pk}")
    expect(page.get_by_test_id("incident-status")).to_have_text("open")
    assert page.get_by_test_id("operator-actions").count() == 0
    page.goto(f"{stack.running.url}/ui/worker")
    expect(page.get_by_test_id("worker-demo-gateway")).to_be_visible()
    assert page.get_by_test_id("kill-switch-form").count() == 0

    # The viewer's own session, with its CSRF token: refused for the role, and audited.
    csrf = page.locator("form.who input[name=csrf]").input_value()
    refused = page.request.post(f"{stack.running.url}/ui/incidents/{incident.pk}/ack", form={"csrf": csrf})
    assert refused.status == 403 and "operator" in refused.text()

    # An operator's session, but a form that does not carry the session's CSRF token: refused, nothing changes.
    operator = context.browser.new_context()  # type: ignore[union-attr]
    try:
        op_page = operator.new_page()
        log_in_with_link(op_page, stack)
        forged = op_page.request.post(f"{stack.running.url}/ui/incidents/{incident.pk}/ack",
                                      form={"note": "forged"})
        assert forged.status == 403 and "CSRF" in forged.text()
        wrong = op_page.request.post(f"{stack.running.url}/ui/incidents/{incident.pk}/ack",
                                     form={"csrf": csrf, "note": "another session's token"})
        assert wrong.status == 403
    finally:
        operator.close()
    # And without any session (another site's form: SameSite=Strict keeps the cookie home), nothing either.
    anonymous = httpx.post(f"{stack.running.url}/ui/incidents/{incident.pk}/ack", data={"csrf": csrf})
    assert anonymous.status_code == 401
    with session_scope(stack.running.store) as session:
        assert session.get(Incident, incident.pk).status == "open"  # type: ignore[union-attr]


def test_every_page_fits_a_phone_screen_and_logout_ends_the_session(phone: BrowserContext,
                                                                     stack: DemoStack) -> None:
    page = phone.new_page()
    log_in_with_link(page, stack)
    for path in PAGES:
        response = page.goto(f"{stack.running.url}{path}")
        assert response is not None and response.status == 200, path
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} is {overflow}px wider than a phone's screen"
    page.goto(f"{stack.running.url}/ui/")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{stack.running.url}/ui/login")
    page.goto(f"{stack.running.url}/ui/keys")
    page.wait_for_url(f"{stack.running.url}/ui/login")
