"""The report's charts leave matplotlib's process-wide state as they found it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, matplotlib
def raw():  # RcParams._get reads a value as stored: reading "backend" plainly would resolve it (pyplot)
    return {key: matplotlib.rcParams._get(key) for key in matplotlib.rcParams}
before = raw()
from pipeline.report import plots
uri = plots.plot_funnel({"steps": [{"step": "requests", "count": 3}, {"step": "kept tasks", "count": 2}]})
assert uri.startswith("data:image/png;base64,")
assert raw() == before, "rcParams or the backend changed"
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
print("ok")
"""


def test_drawing_a_chart_changes_no_global_matplotlib_state():
    # A fresh interpreter: other tests may already have imported pyplot or changed rcParams.
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_style_applies_while_a_chart_is_drawn():
    import matplotlib

    from pipeline.report.plots import STYLE, styled

    @styled
    def probe() -> dict[str, object]:
        return {key: matplotlib.rcParams[key] for key in STYLE}

    assert probe() == STYLE
    assert matplotlib.rcParams["axes.spines.top"] is True  # back to matplotlib's default outside
