"""`python -m bench --quick` runs end to end: five measurements printed and written as JSON.

No timing is asserted here (the box running the tests is not the benchmark box)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("throughput", "baselines", "latency", "memory", "scaling")


def test_quick_benchmark_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in NAMES:
        assert name in proc.stdout
    result = json.loads(out.read_text())
    for name in NAMES:
        assert isinstance(result[name], dict) and isinstance(result[name]["pass"], bool)
    assert result["mode"] == "quick"
    assert result["throughput"]["events_per_s"] > 0
    assert result["latency"]["killed"] == result["latency"]["breaches"]
    # issue 14: the failover row (skipped, and saying so, without a PostgreSQL server)
    assert "failover" in proc.stdout and isinstance(result["failover"]["pass"], bool)
    assert "skipped" in result["failover"] or result["failover"]["worst_s"] > 0
