"""`nni-ext select` as CNAS's post-search: --prefer trade-off / KEY / KEY#VALUE, --n-exits, pick_NN/ folders.

The experiments are stand-ins for an experiment's database (as in tests/test_ofa_export.py): real NNI trial
records (parameters in NNI's ``{"_value", "_idx"}`` form, metric dicts) of real architectures of the
``ofa-mbv3`` and ``ofa-mbv3-ee`` spaces, with metric values chosen so that the front is known. The
selection, the files and the exported weights are the real code paths of the command.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nni_ext.cli import main
from nni_ext.experiment import Trial
from nni_ext.ofa2.export import from_subnet, to_subnet
from nni_ext.report import active_exits, exit_genes
from nni_ext.results import ExperimentResults
from nni_ext.spaces.ofa_mbv3 import LABELS, OfaMbv3Space
from nni_ext.spaces.ofa_mbv3_ee import OfaMbv3EeSpace

SPACE = OfaMbv3Space(num_classes=10, resolutions=[32])
EE = {kind: OfaMbv3EeSpace(num_classes=10, resolutions=[32], exits=kind) for kind in ("threshold", "binary")}
OFA_OBJECTIVES = {"default": "maximize", "flops": "minimize"}
EE_OBJECTIVES = {"default": "maximize", "avg_macs": "minimize"}
# (top-1, MFLOPs) of eight trials: T1 is dominated by T0 (same flops, lower top-1), T4 by T3
OFA_VALUES = [(0.50, 1.0), (0.40, 1.0), (0.60, 2.0), (0.70, 3.0), (0.65, 3.5), (0.80, 5.0), (0.85, 8.0), (0.30, 0.5)]
OFA_FRONT = ["T7", "T0", "T2", "T3", "T5", "T6"]  # by flops


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _nni(arch: dict[str, Any], space: OfaMbv3Space) -> dict[str, Any]:
    """Parameters as NNI hands them to a trial: ``{"_value": v, "_idx": i}`` per label."""
    choices = space.choices()
    return {k: {"_value": v, "_idx": choices[k].index(v)} for k, v in arch.items()}


def _experiment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, params: list[dict[str, Any]],
                metrics: list[dict[str, Any]], objectives: dict[str, str]) -> str:
    """Trials T0, T1, ... of ``params``/``metrics``, served by ``load_experiment("EXP")``."""
    import nni_ext.results

    trials = [Trial(f"T{i}", "SUCCEEDED", str(i), p, m, finished_at=i) for i, (p, m) in enumerate(zip(params, metrics))]
    results = ExperimentResults("EXP", tmp_path / "EXP", {"tuner": {"classArgs": {"objectives": objectives}}}, trials)
    monkeypatch.setattr(nni_ext.results, "load_experiment", lambda ref: results)
    return "EXP"


@pytest.fixture()
def ofa_exp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """Eight ofa-mbv3 trials with the known front OFA_FRONT; returns their architectures."""
    rng = np.random.default_rng(2)
    archs = [SPACE.sample(rng) for _ in OFA_VALUES]
    metrics = [{"default": top1, "flops": mflops * 1e6, "params": 1e5 * (i + 1)}
               for i, (top1, mflops) in enumerate(OFA_VALUES)]
    _experiment(monkeypatch, tmp_path, [_nni(a, SPACE) for a in archs], metrics, OFA_OBJECTIVES)
    return archs


def _select(out: Path, *args: str) -> list[dict[str, Any]]:
    assert main(["select", "EXP", "-o", str(out), *args]) == 0
    return [json.loads(p.read_text()) for p in sorted(out.glob("pick_*.json"))]


def _ids(picks: list[dict[str, Any]]) -> list[str]:
    return [p["trial_id"] for p in picks]


def test_prefer_an_objective_picks_its_best_front_points(ofa_exp: list[dict[str, Any]], tmp_path: Path) -> None:
    assert _ids(_select(tmp_path / "flops", "--prefer", "flops", "-n", "3")) == OFA_FRONT[:3]
    assert _ids(_select(tmp_path / "macs", "--prefer", "macs", "-n", "3")) == OFA_FRONT[:3]  # an alias of flops
    # a maximised objective: its highest values
    assert _ids(_select(tmp_path / "top1", "--prefer", "default", "-n", "2")) == ["T6", "T5"]
    # more than the front holds: the whole front, in order, and no dominated point (T1 shares T0's flops)
    assert _ids(_select(tmp_path / "all", "--prefer", "flops", "-n", "20")) == OFA_FRONT


def test_prefer_trade_off_is_the_default(ofa_exp: list[dict[str, Any]], tmp_path: Path) -> None:
    default = _select(tmp_path / "default", "-n", "3")
    trade_off = _select(tmp_path / "trade", "-n", "3", "--prefer", "trade-off")
    assert default == trade_off and len(default) == 3
    assert default[0]["trial_id"] == "T6" and set(_ids(default)) <= set(OFA_FRONT)  # the best top-1 comes first
    for name in ("selection.csv", "pick_02/net.subnet", "pick_03/net.stats"):
        assert (tmp_path / "default" / name).read_text() == (tmp_path / "trade" / name).read_text(), name
    # the preference form still works: closest to top-1 0.6 at 2 MFLOPs is T2 (after the best top-1)
    assert _ids(_select(tmp_path / "pref", "-n", "2", "--prefer", "default#0.6+flops#2e6")) == ["T6", "T2"]


def test_pick_folders_hold_net_subnet_and_net_stats(ofa_exp: list[dict[str, Any]], tmp_path: Path) -> None:
    out = tmp_path / "picks"
    picks = _select(out, "--prefer", "flops", "-n", "3")
    rows = list(csv.DictReader(open(out / "selection.csv")))
    assert [r["trial_id"] for r in rows] == OFA_FRONT[:3] and [int(r["rank"]) for r in rows] == [1, 2, 3]
    for rank, (pick, trial) in enumerate(zip(picks, OFA_FRONT[:3]), 1):
        i = int(trial[1:])
        folder = out / f"pick_{rank:02d}"
        assert sorted(p.name for p in folder.iterdir()) == ["net.stats", "net.subnet"]
        subnet = json.loads((folder / "net.subnet").read_text())
        assert subnet == to_subnet(ofa_exp[i]) and len(subnet["ks"]) == sum(subnet["d"])  # as `nni-ext ofa export`
        assert from_subnet(subnet) == SPACE.canonicalize(ofa_exp[i])
        stats = json.loads((folder / "net.stats").read_text())
        top1, mflops = OFA_VALUES[i]
        assert stats == {"default": top1, "flops": mflops * 1e6, "params": 1e5 * (i + 1), "rank": rank,
                         "trial_id": trial, "parameter_id": str(i),
                         "objectives": {"default": top1, "flops": mflops * 1e6}, "senses": OFA_OBJECTIVES,
                         "feasible": True}
        assert pick["parameters"] == _nni(ofa_exp[i], SPACE)  # pick_NN.json as before


def _ee_arch(space: OfaMbv3EeSpace, rng: np.random.Generator, n_exits: int) -> dict[str, Any]:
    """A random architecture of ``space`` with exactly ``n_exits`` exits (random stages and thresholds)."""
    arch = space.sample(rng)
    on = set(rng.choice(len(space.exit_labels), n_exits, replace=False).tolist())
    for j, label in enumerate(space.exit_labels):
        if space.config["exits"] == "binary":
            arch[label] = int(j in on)
        else:
            arch[label] = float(rng.choice([0.1, 0.2])) if j in on else 1.0
    return space.validate(arch)


@pytest.mark.parametrize("kind", ["threshold", "binary"])
def test_active_exits_agrees_with_the_space(kind: str) -> None:
    space, rng = EE[kind], np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(40)]
    counts = [active_exits(a) for a in archs]
    assert counts == [len(space.exit_thresholds(a)) for a in archs] and len(set(counts)) >= 3
    assert [active_exits(_nni(a, space)) for a in archs] == counts  # NNI's wrapped form
    assert list(exit_genes(archs[0])) == space.exit_labels
    assert active_exits(SPACE.sample(rng)) is None  # ofa-mbv3 has no exit genes


def _front(points: np.ndarray) -> set[int]:
    """Non-dominated rows of a minimisation matrix, by definition."""
    return {i for i, p in enumerate(points)
            if not any(np.all(q <= p) and np.any(q < p) for j, q in enumerate(points) if j != i)}


@pytest.mark.parametrize("kind", ["threshold", "binary"])
def test_n_exits_selects_from_the_front_of_that_many_exits(kind: str, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    space, rng = EE[kind], np.random.default_rng(7)
    wanted = [0, 1, 2, 3] * 4
    archs = [_ee_arch(space, rng, k) for k in wanted]
    u = rng.uniform(0, 1, len(archs))  # top-1 grows with the cost, with noise: fronts of several points
    metrics = [{"default": 0.3 + 0.6 * v, "avg_macs": float((1 + 8 * v + rng.normal(0, 1.5)) * 1e6), "flops": 1e7}
               for v in u]
    _experiment(monkeypatch, tmp_path, [_nni(a, space) for a in archs], metrics, EE_OBJECTIVES)
    F = np.array([[-m["default"], m["avg_macs"]] for m in metrics])
    own = set()  # points on the front of their exit count but dominated in the whole experiment
    for k in (1, 2):
        members = [i for i, c in enumerate(wanted) if c == k]
        front = sorted((members[j] for j in _front(F[members])), key=lambda i: F[i, 1])
        out = tmp_path / f"exits{k}"
        picks = _select(out, "--n-exits", str(k), "--prefer", "avg_macs", "-n", "20")
        assert _ids(picks) == [f"T{i}" for i in front]  # the whole front of the k-exit architectures
        assert len(front) >= 2
        own |= set(front) - _front(F)
        for rank, i in enumerate(front, 1):
            stats = json.loads((out / f"pick_{rank:02d}" / "net.stats").read_text())
            assert stats["n_exits"] == k == len(space.exit_thresholds(archs[i]))
            subnet = json.loads((out / f"pick_{rank:02d}" / "net.subnet").read_text())
            assert subnet == {**to_subnet(archs[i]), **{label: archs[i][label] for label in space.exit_labels}}
        knees = _select(tmp_path / f"knees{k}", "--n-exits", str(k), "-n", "2")
        assert len(knees) == 2 and all(active_exits(p["parameters"]) == k for p in knees)
        assert knees[0]["metrics"]["default"] == max(metrics[i]["default"] for i in members)
    assert own  # the front is that of the eligible architectures, not the experiment's


def test_supernet_writes_the_inherited_weights(ofa_supernet: Path, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """An early-exit pick gets its backbone from the supernet; net.subnet keeps its exit genes."""
    from nni_ext.ofa2 import load_supernet
    from nni_ext.ofa2.export import load_exported
    from nni_ext.spaces.ofa_mbv3 import to_ofa

    space, rng = EE["threshold"], np.random.default_rng(3)
    archs = [_ee_arch(space, rng, 2), _ee_arch(space, rng, 1)]
    metrics = [{"default": 0.8, "avg_macs": 3e6}, {"default": 0.7, "avg_macs": 2e6}]
    _experiment(monkeypatch, tmp_path, [_nni(a, space) for a in archs], metrics, EE_OBJECTIVES)
    out = tmp_path / "picks"
    picks = _select(out, "--n-exits", "2", "-n", "1", "--supernet", str(ofa_supernet))
    assert _ids(picks) == ["T0"]
    folder = out / "pick_01"
    assert sorted(p.name for p in folder.iterdir()) == ["net.config", "net.inherited", "net.stats", "net.subnet"]
    subnet = json.loads((folder / "net.subnet").read_text())
    assert subnet == {**to_subnet(archs[0]), **exit_genes(archs[0])}
    model = load_exported(folder).eval()
    supernet = load_supernet(ofa_supernet).eval()
    ofa = to_ofa({k: archs[0][k] for k in LABELS})
    supernet.set_active_subnet(ks=ofa["ks"], e=ofa["e"], d=ofa["d"])
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(x), supernet(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["unknown_objective", "bad_preference", "no_exit_genes", "no_such_count",
                                  "negative_exits", "supernet_not_ofa", "supernet_missing"])
def test_bad_input_is_one_line(case: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    if case in ("no_such_count",):
        archs = [_ee_arch(EE["threshold"], rng, k) for k in (0, 1, 2, 1)]
        params = [_nni(a, EE["threshold"]) for a in archs]
        objectives = EE_OBJECTIVES
    elif case == "supernet_not_ofa":  # a benchmark problem's parameters: net.subnet is the plain dict
        params = [{"x0": {"_value": v, "_idx": 0}, "x1": 1 - v} for v in (0.1, 0.4, 0.7, 0.9)]
        objectives = {"default": "minimize", "avg_macs": "minimize"}
    else:
        params = [_nni(SPACE.sample(rng), SPACE) for _ in range(4)]
        objectives = EE_OBJECTIVES
    metrics = [{"default": v, "avg_macs": (1 - v) * 1e6} for v in (0.2, 0.4, 0.6, 0.8)]
    _experiment(monkeypatch, tmp_path, params, metrics, objectives)
    argv, message = {
        "unknown_objective": (["--prefer", "latency"], "--prefer 'latency' is not an objective of this experiment; "
                                                       "give one of default, avg_macs"),
        "bad_preference": (["--prefer", "top1#0.8"], "not an objective; objectives: default, avg_macs"),
        "no_exit_genes": (["--n-exits", "1"], "have no early-exit genes"),
        "no_such_count": (["--n-exits", "3"], "no finished architecture has 3 active exits; the experiment has "
                                              "architectures with 0, 1, 2"),
        "negative_exits": (["--n-exits", "-1"], "0 or more"),
        "supernet_not_ofa": (["--supernet", str(Path(__file__))], "--supernet exports OFA MobileNetV3 architectures"),
        "supernet_missing": (["--supernet", str(tmp_path / "none.pth")], "not found"),
    }[case]
    out = tmp_path / "out"
    assert main(["select", "EXP", "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nni-ext: error: ") and message in err[0], err
    assert not out.exists()  # nothing written
    if case == "supernet_not_ofa":
        assert main(["select", "EXP", "-o", str(out), "-n", "1", "--prefer", "default"]) == 0
        assert json.loads((out / "pick_01" / "net.subnet").read_text()) == {"x0": 0.1, "x1": 0.9}
