"""worker/warehouse/duck.py: DuckDB's one-process-at-a-time file, shared by rosesync's processes
and threads (issue 14, item 5). The sync suite runs on DuckDB too (tests/worker/sync/test_run.py,
``warehouse_url``), with `rosesync status` in other processes while a sync writes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from worker.errors import WarehouseUnavailable
from worker.warehouse import connect, duck
from worker.warehouse.runs import get_run, start_run
from worker.warehouse.schema import runs

# Opens the file as any other DuckDB client would (a shell, a notebook) and keeps it open until
# told to let go on stdin.
HOLD = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
connection.close()
"""


def test_a_file_another_process_holds_is_waited_for_then_named(
    duckdb_url: str, tmp_path: Path
) -> None:
    connect(duckdb_url).dispose()
    path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == "holding\n"
        impatient = duck.create_engine(sa.make_url(duckdb_url), timeout=0.5)
        with pytest.raises(WarehouseUnavailable) as caught, impatient.connect():
            pass
        message = str(caught.value)
        assert message.startswith(f"DATABASE_URL: {duckdb_url} stayed locked by another process")
        assert f"(PID {holder.pid})" in message and "\n" not in message

        # A patient engine waits for the file (the holder lets go while it waits), and can
        # then open it again at once: it holds the file only for its transaction.
        release = threading.Timer(0.5, lambda: holder.communicate("go\n", timeout=30))
        release.start()
        patient = duck.create_engine(sa.make_url(duckdb_url), timeout=60)
        with patient.begin() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar() == 0
        release.join()
        assert holder.returncode == 0
        with patient.begin() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar() == 0
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_threads_of_one_process_take_turns(duckdb_url: str) -> None:
    """Two transactions of one process that read and then update the same row would conflict
    in DuckDB (its concurrency is optimistic); rosesync's threads (a sync's writer, its lease
    heartbeat) take turns instead, as on SQLite, so none fails and no update is lost."""
    engine = connect(duckdb_url)
    run_id = start_run(engine, "orders", "default", "full", "cli", None)[0]
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(20):
                with engine.begin() as conn:
                    pages = conn.execute(sa.select(runs.c.pages).where(runs.c.id == run_id))
                    value = pages.scalar_one()
                    conn.execute(runs.update().where(runs.c.id == run_id).values(pages=value + 1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert get_run(engine, run_id).pages == 80
