"""NNI's web UI shows a search that minimises ``default`` the right way round (headless Chromium).

The overview's "Best metric" and "Top trials" follow ``optimize_mode`` in the tuner's classArgs (maximize
when absent). ``configs/moo_zdt1.yml`` minimises ``default``; its overview must show the smallest value.
Skipped where Chromium is not installed (``.ci/run`` installs it: ``apt-get install chromium``).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nni_ext import experiment

from .conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")]


def _render(url: str, *, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (and a screenshot when asked)."""
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1100",
            "--virtual-time-budget=15000"]
    if screenshot is not None:
        subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
    return subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout


@pytest.mark.timeout(600)
def test_overview_ranks_a_minimised_default_by_its_smallest_value(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "moo_zdt1.yml").read_text())
    assert config["tuner"]["classArgs"]["optimize_mode"] == "minimize"
    config.update(searchSpaceFile=str(REPO / "examples" / "moo_benchmark" / "zdt_space.json"),
                  trialCodeDirectory=str(REPO), experimentWorkingDirectory=str(tmp_path / "experiments"),
                  maxTrialNumber=9, trialConcurrency=3)
    config["tuner"] = {"className": "nni_ext.tuners.NSGA2Tuner", "codeDirectory": str(REPO),
                       "classArgs": {**config["tuner"]["classArgs"], "population_size": 6}}
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    exp = experiment.create(tmp_path / "config.yml")
    try:
        assert exp.wait(timeout=480) == "DONE", exp.status()
        values = [t.metrics["default"] for t in exp.trials() if t.metrics and "default" in t.metrics]
        dom = _render(f"http://127.0.0.1:{exp.port}/oview", screenshot=tmp_path / "overview.png")
    finally:
        exp.stop()
    assert len(values) == 9 and max(values) > min(values)
    shown = re.search(r'class="bestMetric"><div class="[^"]*">([^<]+)</div>', dom)
    assert shown, "no 'Best metric' on the rendered overview"
    assert float(shown.group(1)) == pytest.approx(min(values), abs=1e-6), (shown.group(1), min(values), max(values))
    assert (tmp_path / "overview.png").stat().st_size > 10_000
