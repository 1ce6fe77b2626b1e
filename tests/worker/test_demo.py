"""worker/demo.py: `rosesync demo` end to end, from a directory with a hostile .env."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa


@pytest.mark.parametrize(
    ("profile", "resources", "paging"), [("extended", 6, "keyset"), ("documented", 5, "sweep")]
)
def test_demo_end_to_end(tmp_path: Path, profile: str, resources: int, paging: str) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("DATABASE_URL=postgresql://nobody@nowhere/none\nSYNC_RESOURCES=trucks\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ROSEROCKET_", "SYNC_"))}
    result = subprocess.run(
        [sys.executable, "-m", "worker", "demo", "--profile", profile],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in ("full sync:", "incremental sync:", "rosesync status:", "sqlite3 var/demo/"):
        assert step in out
    assert "failed" not in out
    assert "GROUP BY status, currency" in out  # never USD and CAD added together (issue 17)
    # the last line says how to run rosesync from a shell, not a bare `rrsync` (issue 17)
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"rosesync is installed in {Path(sys.executable).parent}")
    database = tmp_path / "var" / "demo" / "rrsync-demo.db"
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        orders = conn.execute(sa.text("SELECT count(*) FROM rr_orders")).scalar_one()
        runs = conn.execute(sa.text("SELECT count(*) FROM rrsync_runs")).scalar_one()
    assert orders >= 1000
    assert runs == 2 * resources  # a full and an incremental run of each (no invoices API)
    assert f"orders     {paging}" in out  # the status table's paging column
    assert dotenv.read_text().startswith("DATABASE_URL=postgresql://nobody")  # untouched
    assert "rrsync-demo-secret" not in out + result.stderr
