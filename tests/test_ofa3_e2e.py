"""OFA³ end to end on the digits, as a user runs it: `ofa3 tables` (search subset and val), `ofa3 select`, then a
real nnictl experiment with the OFA3Ensemble tuner whose trials measure the chosen ensembles; it must end DONE and
every measured accuracy must equal the soft-voting accuracy of the same members on the validation tables."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from nni_ext import experiment
from nni_ext.ensemble import SoftVotingScorer, read_tables, write_latency

from .conftest import REPO, run_cli
from .ofa3_fixtures import ofa_population

MODELS, ENSEMBLES, CALIB = 5, 3, 64
# one calibration protocol for the tables and the trials (the same images, batches, seed, threads and batch size),
# so the trials' members are the very networks of the tables
SAME = ["--calib-images", str(CALIB), "--calib-batch-size", "100", "--seed", "0", "--batch-size", "200",
        "--threads", "1", "--workers", "0", "--backend", "torchvision", "--device", "cpu"]


def _cli(*args: str) -> str:
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.timeout(600)
def test_tables_select_and_measured_ensembles_under_nnictl(ofa_supernet: Path, digits_root: Path,
                                                             digits_search_root: Path, tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    pop = tmp_path / "result.json"
    ofa_population(pop, MODELS, largest=False)
    search, val = tmp_path / "tables" / "search", tmp_path / "tables" / "val"
    # --top-k 10 keeps all the digits' classes: the tables' soft voting is exactly the trials' dense soft voting
    common = ["--population", str(pop), "--supernet", str(ofa_supernet), "--split", "val", "--top-k", "10", *SAME]
    assert "5 OFA model(s) written" in _cli("ofa3", "tables", *common, "--data", str(digits_search_root),
                                            "--out", str(search))
    _cli("ofa3", "tables", *common, "--data", str(digits_root), "--out", str(val))
    timings["tables"] = time.perf_counter() - start
    names = [f"model_{i:02d}" for i in range(MODELS)]
    latency = tmp_path / "latency.csv"
    write_latency(latency, names, [2.0, 3.0, 4.0, 6.0, 9.0])  # a latency table, as OFA² would give
    sel = tmp_path / "select"
    selection = ["--population", "8", "--generations", "10", "--seed", "1", "--min-members", "2"]
    _cli("ofa3", "select", "--tables", str(search), "--val-tables", str(val), "--latency", str(latency),
         "--criterion", "max", *selection, "--log-every", "0", "--out", str(sel))
    chosen = json.loads((sel / "ensembles.json").read_text())["ensembles"]
    assert chosen and all("val_accuracy" in e and e["size"] >= 2 for e in chosen)

    config = yaml.safe_load((REPO / "configs" / "ofa3_ensemble_digits.yml").read_text())
    assert config["maxTrialNumber"] == config["tuner"]["classArgs"]["max_ensembles"]
    config.update(
        trialCodeDirectory=str(REPO), experimentWorkingDirectory=str(tmp_path / "experiments"),
        trialConcurrency=1, maxTrialNumber=ENSEMBLES,
        trialCommand=" ".join(["python -m nni_ext.trials.ofa3_ensemble_trial", "--population", str(pop),
                               "--supernet", str(ofa_supernet), "--data", str(digits_root), "--split", "val", *SAME,
                               "--latency-warmup", "1", "--latency-repeats", "3"]))
    config["tuner"]["codeDirectory"] = str(REPO)
    config["tuner"]["classArgs"].update(tables=str(search), val_tables=str(val), latency=str(latency),
                                        population=8, generations=10, min_members=2, seed=1,
                                        max_ensembles=ENSEMBLES, order="accuracy")
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    exp = experiment.create(tmp_path / "config.yml")
    try:
        status = exp.wait(timeout=400)
        assert status == "DONE", exp.status()  # not TUNER_NO_MORE_TRIAL: maxTrialNumber = max_ensembles
        trials, directory = exp.trials(), exp.directory
    finally:
        exp.stop()
    timings["nnictl"] = time.perf_counter() - start
    timings.update({f"trial {t.parameters['members']}": t.metrics["seconds"] for t in trials if t.metrics})
    print(f"timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}")

    assert len(trials) == ENSEMBLES and all(t.status == "SUCCEEDED" for t in trials), [t.status for t in trials]
    record = json.loads((directory / "ofa3" / "dispatched.json").read_text())
    assert record["dispatched"] == record["measured"] == ENSEMBLES
    tables = read_tables(val)
    scorer = SoftVotingScorer(tables, cache_size=0)
    front = [sorted(int(n.split("_")[1]) for n in e["members"]) for e in chosen]
    by_members = {json.dumps(e["members"]): e for e in record["ensembles"]}
    for t in trials:
        members = json.loads(t.parameters["members"])
        assert t.metrics["members"] == t.parameters["members"] and t.metrics["n_members"] == len(members) >= 2
        row = np.zeros((1, MODELS), dtype=bool)
        row[0, members] = True
        expected = float(scorer.accuracy(row)[0])
        assert t.metrics["default"] == pytest.approx(expected, abs=1e-9), (members, t.metrics, expected)
        assert t.metrics["val_images"] == tables.n_images
        assert 0 < t.metrics["latency_max"] <= t.metrics["latency_sum"]
        entry = by_members[json.dumps(members)]
        assert entry["val_accuracy"] == pytest.approx(expected, abs=1e-9)  # the tuner's figure from the tables
        measured = entry["measured"]
        assert measured is not None and measured["default"] == pytest.approx(t.metrics["default"])
        assert measured["latency_max"] <= measured["latency_sum"]
        if entry["efficient"]:  # the tuner's selection is the one `ofa3 select` made with the same arguments
            assert members in front
