"""Schema upgrades through Alembic, on SQLite files and a real PostgreSQL: rows survive, the head schema is the
models' schema, and replicas starting together upgrade one at a time."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Column, MetaData, UniqueConstraint, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, select
from sqlmodel.main import default_registry
from tests.servers import free_port, fresh_postgres_database

from keyguard.errors import StoreError
from keyguard.store.db import (
    BASELINE_REVISION,
    MIGRATIONS_DIR,
    create_store_engine,
    init_store,
    migration_config,
    session_scope,
)
from keyguard.store.models import AlertRecord, CheckRun, CheckSchedule, FindingRecord, ObservationRecord

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


# The store's tables as the code before migrations declared them (`git show d51b3b3:service/keyguard/store/models.py`),
# on their own registry so they do not clash with today's models. create_all of these is what old stores hold.
class LegacyTable(SQLModel, registry=registry()):
    pass


class LegacyFinding(LegacyTable, table=True):
    __tablename__ = "findings"
    __table_args__ = (UniqueConstraint("scope", "fingerprint", name="uq_findings_scope_fingerprint"),)

    pk: int | None = Field(default=None, primary_key=True)
    scope: str = Field(index=True)
    fingerprint: str = Field(index=True)
    rule_id: str = Field(index=True)
    severity: str
    resource: str
    message: str
    remediation: str
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="open", index=True)
    first_seen: datetime = T0
    last_seen: datetime = T0
    resolved_at: datetime | None = None


class LegacyAlert(LegacyTable, table=True):
    __tablename__ = "alerts"

    pk: int | None = Field(default=None, primary_key=True)
    transition: str
    scope: str
    fingerprint: str
    rule_id: str
    severity: str
    resource: str
    title: str
    body: str
    created_at: datetime = T0
    delivered_at: datetime | None = Field(default=None, index=True)
    attempts: int = 0
    delivered_routes: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    last_error: str | None = None


class LegacyCheckRun(LegacyTable, table=True):
    __tablename__ = "check_runs"

    pk: int | None = Field(default=None, primary_key=True)
    scope: str = Field(index=True)
    started_at: datetime = T0
    finished_at: datetime | None = None
    ok: bool = False
    findings: int = 0
    error: str | None = None


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/keyguard.db"
    else:
        with fresh_postgres_database(request.getfixturevalue("postgres_url")) as url:
            yield url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = create_store_engine(store_url)
    yield engine
    engine.dispose()


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def store_metadata() -> MetaData:
    """Today's store tables only: other packages (the worker journal) declare tables on SQLModel.metadata too."""
    metadata = MetaData()
    for mapper in default_registry.mappers:
        if mapper.class_.__module__.startswith("keyguard.store."):
            SQLModel.metadata.tables[mapper.class_.__tablename__].to_metadata(metadata)
    return metadata


def schema_differences(engine: Engine, metadata: MetaData) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, metadata))


def upgrade_to_baseline(engine: Engine) -> None:
    with engine.begin() as conn:
        command.upgrade(migration_config(conn), BASELINE_REVISION)


def finding(fingerprint: str, status: str) -> LegacyFinding:
    return LegacyFinding(scope="keys:binance", fingerprint=fingerprint, rule_id="KG-KEY-101", severity="critical",
                         resource=f"binance/{fingerprint}", message="bot key can withdraw",
                         remediation="Disable withdrawals on the key.", evidence={"permissions": {"withdraw": True}},
                         status=status, resolved_at=T0 if status == "resolved" else None)


def insert_baseline_rows(engine: Engine) -> None:
    """One open finding, one resolved finding, one alert and one check run, written through the baseline tables."""
    with session_scope(engine) as s:
        s.add(finding("bot-open", "open"))
        s.add(finding("bot-resolved", "resolved"))
        s.add(LegacyAlert(transition="new", scope="keys:binance", fingerprint="bot-open", rule_id="KG-KEY-101",
                          severity="critical", resource="binance/bot-open", title="new finding", body="withdraw",
                          delivered_at=T0, attempts=1, delivered_routes=[0]))
        s.add(LegacyCheckRun(scope="keys:binance", finished_at=T0, ok=True, findings=1))


def assert_baseline_rows_kept_and_new_columns_filled(engine: Engine) -> None:
    with session_scope(engine) as s:
        findings = {f.fingerprint: f for f in s.exec(select(FindingRecord))}
        [alert] = s.exec(select(AlertRecord)).all()
        [run] = s.exec(select(CheckRun)).all()
    assert set(findings) == {"bot-open", "bot-resolved"}
    opened, resolved = findings["bot-open"], findings["bot-resolved"]
    assert opened.status == "open" and opened.alerted is True and opened.clean_streak == 0
    assert opened.evidence == {"permissions": {"withdraw": True}}
    assert resolved.status == "resolved" and resolved.alerted is False and resolved.clean_streak == 0
    assert alert.fingerprint == "bot-open" and alert.delivered_routes == [0]
    assert run.ok is True and run.findings == 1 and run.runner is None


def assert_new_tables_take_rows(engine: Engine) -> None:
    with session_scope(engine) as s:
        s.add(CheckSchedule(scope="keys:binance", next_due_at=T0, last_runner="replica-a"))
        s.add(ObservationRecord(scope="keys:binance", resource="binance/bot-open", last_attempt_at=T0, last_ok_at=T0))
        s.add(CheckRun(scope="keys:binance", ok=True, runner="replica-a"))
    with session_scope(engine) as s:
        [schedule] = s.exec(select(CheckSchedule)).all()
        [observation] = s.exec(select(ObservationRecord)).all()
        runners = {r.runner for r in s.exec(select(CheckRun))}
    assert schedule.last_runner == "replica-a" and schedule.next_due_at == T0
    assert observation.resource == "binance/bot-open" and observation.last_ok_at == T0
    assert "replica-a" in runners


def test_store_at_the_baseline_revision_upgrades_keeping_its_rows(engine: Engine) -> None:
    upgrade_to_baseline(engine)
    insert_baseline_rows(engine)
    init_store(engine)
    assert current_revision(engine) == head_revision()
    assert_baseline_rows_kept_and_new_columns_filled(engine)
    assert_new_tables_take_rows(engine)


def test_store_made_by_create_all_before_migrations_is_stamped_and_upgraded(engine: Engine) -> None:
    LegacyTable.metadata.create_all(engine)
    insert_baseline_rows(engine)
    assert "alembic_version" not in inspect(engine).get_table_names()
    init_store(engine)
    assert current_revision(engine) == head_revision()
    assert_baseline_rows_kept_and_new_columns_filled(engine)
    assert_new_tables_take_rows(engine)


def forget_migrations(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")


def drop_live_check_columns(engine: Engine) -> None:
    with engine.begin() as conn:
        operations = Operations(MigrationContext.configure(conn))
        with operations.batch_alter_table("findings") as batch:
            batch.drop_column("alerted")
            batch.drop_column("clean_streak")
        with operations.batch_alter_table("check_runs") as batch:
            batch.drop_column("runner")


def test_store_made_by_create_all_of_the_live_checks_models_keeps_its_alerted_flags(engine: Engine) -> None:
    # The live-checks release ran create_all before migrations existed: its stores have the new schema, no version.
    init_store(engine)
    forget_migrations(engine)
    insert_baseline_rows(engine)
    with session_scope(engine) as s:
        s.add(CheckSchedule(scope="keys:binance", next_due_at=T0))
    init_store(engine)
    assert current_revision(engine) == head_revision()
    with session_scope(engine) as s:
        opened = s.exec(select(FindingRecord).where(FindingRecord.fingerprint == "bot-open")).one()
        [schedule] = s.exec(select(CheckSchedule)).all()
    assert opened.alerted is False  # the release recorded it: folded into an outage alert, never paged
    assert schedule.next_due_at == T0
    assert schema_differences(engine, store_metadata()) == []


def test_old_store_that_the_live_checks_release_added_tables_to_is_completed(engine: Engine) -> None:
    # Started once by the live-checks release: create_all added the new tables but never the new columns.
    init_store(engine)
    forget_migrations(engine)
    drop_live_check_columns(engine)
    insert_baseline_rows(engine)
    init_store(engine)
    assert current_revision(engine) == head_revision()
    assert_baseline_rows_kept_and_new_columns_filled(engine)
    assert schema_differences(engine, store_metadata()) == []


def test_baseline_revision_is_the_schema_create_all_made_before_migrations(engine: Engine) -> None:
    upgrade_to_baseline(engine)
    assert schema_differences(engine, LegacyTable.metadata) == []


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    init_store(engine)
    assert schema_differences(engine, store_metadata()) == []


def test_downgrade_to_baseline_restores_the_old_schema_keeping_findings(engine: Engine) -> None:
    upgrade_to_baseline(engine)
    insert_baseline_rows(engine)
    init_store(engine)
    with engine.begin() as conn:
        command.downgrade(migration_config(conn), BASELINE_REVISION)
    assert schema_differences(engine, LegacyTable.metadata) == []
    with session_scope(engine) as s:
        assert {f.fingerprint for f in s.exec(select(LegacyFinding))} == {"bot-open", "bot-resolved"}


def test_init_store_twice_keeps_schema_and_rows(engine: Engine) -> None:
    init_store(engine)
    assert_new_tables_take_rows(engine)
    init_store(engine)
    assert current_revision(engine) == head_revision()
    with session_scope(engine) as s:
        assert [o.resource for o in s.exec(select(ObservationRecord))] == ["binance/bot-open"]


def test_a_store_migrated_by_a_newer_release_is_refused_with_its_revision(engine: Engine) -> None:
    init_store(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    with pytest.raises(StoreError, match="at revision 0099_from_the_future, which this Keyguard does not know"):
        init_store(engine)


def start_together(engines: list[Engine]) -> list[Exception]:
    """init_store on each engine from its own thread, all released at once; returns what they raised."""
    start = threading.Barrier(len(engines))
    failures: list[Exception] = []

    def start_store(engine: Engine) -> None:
        start.wait()
        try:
            init_store(engine)
        except Exception as exc:  # collected so the assertion shows each thread's own error
            failures.append(exc)

    threads = [threading.Thread(target=start_store, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_threads_starting_together_on_one_postgres_both_come_up_at_head(pg_store_url: str) -> None:
    engines = [create_store_engine(pg_store_url) for _ in range(2)]
    try:
        assert start_together(engines) == []
        assert current_revision(engines[0]) == head_revision()
        assert_new_tables_take_rows(engines[1])
    finally:
        for engine in engines:
            engine.dispose()


def test_threads_upgrading_different_stores_at_once_all_come_up_at_head(tmp_path: Path) -> None:
    engines = [create_store_engine(f"sqlite:///{tmp_path}/store-{i}.db") for i in range(4)]
    try:
        assert start_together(engines) == []
        assert [current_revision(engine) for engine in engines] == [head_revision()] * len(engines)
    finally:
        for engine in engines:
            engine.dispose()


# A replica: imports everything, says it is ready, waits for "go", then upgrades the store at argv[1].
REPLICA = """
import sys
from keyguard.store.db import create_store_engine, init_store
engine = create_store_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
init_store(engine)
"""


def test_replica_processes_starting_together_upgrade_one_at_a_time(pg_store_url: str) -> None:
    replicas = [subprocess.Popen([sys.executable, "-c", REPLICA, pg_store_url], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for replica in replicas:
        assert replica.stdout is not None and replica.stdout.readline() == "ready\n"
    for replica in replicas:  # released together, so their upgrades overlap unless the store serialises them
        assert replica.stdin is not None
        replica.stdin.write("go\n")
        replica.stdin.flush()
    errors = [replica.communicate(timeout=120)[1] for replica in replicas]
    assert errors == [""] * len(replicas)
    assert [replica.returncode for replica in replicas] == [0] * len(replicas)
    engine = create_store_engine(pg_store_url)
    try:
        assert current_revision(engine) == head_revision()
        assert_new_tables_take_rows(engine)
    finally:
        engine.dispose()


def test_upgrade_keeps_alembic_info_lines_out_of_the_service_log(engine: Engine,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="alembic")  # as in a fresh process, where nothing has quietened it yet
    init_store(engine)
    assert current_revision(engine) == head_revision()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []


def test_unreachable_store_is_a_clear_error_without_the_password() -> None:
    engine = create_store_engine(f"postgresql://keyguard:hunter2-canary@127.0.0.1:{free_port()}/keyguard")
    with pytest.raises(StoreError, match="cannot reach the store") as raised:
        init_store(engine)
    assert "hunter2-canary" not in str(raised.value)
