"""worker/demo.py: `rosesync demo` end to end, from a directory with a hostile .env."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa


@pytest.mark.parametrize(
    ("profile", "resources", "paging", "warehouse"),
    [
        ("extended", 6, "keyset", "sqlite"),
        ("documented", 5, "sweep", "sqlite"),
        ("extended", 6, "keyset", "duckdb"),  # `make demo WAREHOUSE=duckdb` (issue 14)
    ],
)
def test_demo_end_to_end(
    tmp_path: Path, profile: str, resources: int, paging: str, warehouse: str
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("DATABASE_URL=postgresql://nobody@nowhere/none\nSYNC_RESOURCES=trucks\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ROSEROCKET_", "SYNC_"))}
    result = subprocess.run(
        [sys.executable, "-m", "worker", "demo", "--profile", profile, "--warehouse", warehouse],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    shell = "duckdb" if warehouse == "duckdb" else "sqlite3"
    for step in ("full sync:", "incremental sync:", "rosesync status:", f"{shell} var/demo/"):
        assert step in out
    assert "failed" not in out
    assert "GROUP BY status, currency" in out  # never USD and CAD added together (issue 17)
    # the last line says how to run rosesync from a shell, not a bare `rrsync` (issue 17)
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"rosesync is installed in {Path(sys.executable).parent}")
    suffix = "duckdb" if warehouse == "duckdb" else "db"
    database = tmp_path / "var" / "demo" / f"rrsync-demo.{suffix}"
    engine = sa.create_engine(f"{warehouse}:///{database}", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        orders = conn.execute(sa.text("SELECT count(*) FROM rr_orders")).scalar_one()
        runs = conn.execute(sa.text("SELECT count(*) FROM rrsync_runs")).scalar_one()
    assert orders >= 1000
    assert runs == 2 * resources  # a full and an incremental run of each (no invoices API)
    assert f"orders     {paging}" in out  # the status table's paging column
    assert dotenv.read_text().startswith("DATABASE_URL=postgresql://nobody")  # untouched
    assert "rrsync-demo-secret" not in out + result.stderr
