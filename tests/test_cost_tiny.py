"""CNAS tiny-device costs: activations and peak working set, tiny_ml, constraints before dispatch, poly activation."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nni_ext.cost import CNAS_SCRIPT, CostTable, ExactCosts, TinyML, count
from nni_ext.spaces import create_space
from nni_ext.spaces.ofa_mbv3 import PolynomialActivation, polynomial_activations
from nni_ext.testing import simulate
from nni_ext.tuners import MSuNASTuner, NSGA2Tuner

from .conftest import run_cli

torch.set_num_threads(1)
OFA_SMALL = {"num_classes": 10, "resolutions": [32, 48]}
#: layers of CNAS's activation count, written out here independently of nni_ext.cost.ACTIVATION_LAYERS
CNAS_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)


def hook_count(model: nn.Module, size: int) -> tuple[int, int, int]:
    """(MACs of conv/linear layers, output elements of CNAS's layers, max (in + out) elements × 4) by forward hooks."""
    macs, acts, peak = [0], [0], [0]

    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs[0] += out.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, nn.Linear):
            macs[0] += out.numel() * module.in_features
        acts[0] += out.numel()
        peak[0] = max(peak[0], (args[0].numel() + out.numel()) * 4)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, CNAS_LAYERS)]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return macs[0], acts[0], peak[0]


@pytest.fixture(scope="module")
def ofa_space():  # type: ignore[no-untyped-def]
    return create_space("ofa-mbv3", **OFA_SMALL)


@pytest.fixture(scope="module")
def ofa_costs(ofa_space, tmp_path_factory):  # type: ignore[no-untyped-def]
    return ExactCosts(ofa_space, cache_dir=tmp_path_factory.mktemp("tables"))


def test_ofa_subnets_match_an_independent_hook_count(ofa_space, ofa_costs) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    archs = [ofa_space.smallest(), ofa_space.largest(), ofa_space.sample(rng), ofa_space.sample(rng)]
    for arch in archs:
        size = arch["r"]
        model = ofa_space.build(arch)
        macs, acts, peak = hook_count(model, size)
        cost = count(model, size)
        assert (cost.flops, cost.activations, cost.peak_activation_bytes) == (macs, acts, peak)
        assert ofa_costs.cost(arch) == cost  # the table at the architecture's own resolution r
        assert count(model, size, bytes_per_element=1).peak_activation_bytes * 4 == peak
    # the first conv at 48 px: 3x48x48 in, 24x24x24 out; a table's peak is the max of its units' own peaks
    table = ofa_costs.table(48)
    units = ofa_space.cost_units(archs[1], 48)
    assert ofa_costs.cost(archs[1]).peak_activation_bytes == 4 * max(table.memory[u][1] for u in units)
    assert ofa_costs.cost(archs[1]).activations == sum(table.memory[u][0] for u in units)


def test_cost_adds_activations_and_keeps_the_larger_peak() -> None:
    from nni_ext.cost import Cost

    assert Cost(1, 2, 3, 40) + Cost(10, 20, 30, 8) == Cost(11, 22, 33, 40)
    with pytest.raises(ValueError, match="bytes_per_element=0"):
        count(nn.Conv2d(3, 4, 3), 8, bytes_per_element=0)


@pytest.mark.parametrize("name", ["spos", "nas-bench-201", "ofa-mbv3"])
def test_tables_reproduce_activations_and_peak(name: str, ofa_space, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The built-in spaces at a second input size (tests/test_space_contract.py checks every registered space
    at its default size: its ``table.cost(arch) == count(...)`` compares activations and peak too)."""
    space = ofa_space if name == "ofa-mbv3" else create_space(name, **({"num_classes": 10} if name == "spos" else {}))
    size = 48 if name == "ofa-mbv3" else 32
    table = CostTable.build(space, size)
    rng = np.random.default_rng(7)
    for _ in range(2):
        arch = space.sample(rng)
        exact = count(space.build(arch), size)
        assert exact.activations > 0 and exact.peak_activation_bytes > 0
        assert table.cost(arch) == exact
    path = table.save(tmp_path / "t.json")
    assert CostTable.load(path, space).memory == table.memory


def test_old_table_format_is_rebuilt_not_misread(tmp_path: Path) -> None:
    space = create_space("spos-digits")
    table = CostTable.cached(space, 32, cache_dir=tmp_path)
    path = next((tmp_path / "cost_tables").glob("*.json"))
    old = json.loads(path.read_text())
    old["format"] = 1
    old["entries"] = {k: {"flops": v["flops"], "params": v["params"]} for k, v in old["entries"].items()}
    path.write_text(json.dumps(old))
    again = CostTable.cached(space, 32, cache_dir=tmp_path)
    assert again.memory == table.memory and json.loads(path.read_text())["format"] == 2


def test_tiny_ml_equals_a_hand_computation(ofa_space, ofa_costs) -> None:  # type: ignore[no-untyped-def]
    arch = ofa_space.smallest()
    c = count(ofa_space.build(arch), arch["r"])
    p, m, a = c.params / 1e6, c.flops / 1e6, c.activations / 1e6
    # CNAS defaults: pmax 2, mmax 1e10, amax 5, wp 1, wm 1/40, wa 1, pen 1e10 (this net has > 2M params)
    assert p > 2.0 and a < 5.0
    hand = (p + 1e10 * (p - 2.0)) + (m / 40) + a
    assert ofa_costs.metrics(arch)["tiny_ml"] == pytest.approx(hand, rel=1e-12)
    script = CNAS_SCRIPT.score(c.params, c.flops, c.activations)
    assert a < 0.3 and m < 7
    assert script == pytest.approx((p + 1e10 * (p - 2.2)) + m + a, rel=1e-12)
    assert TinyML(pmax=5, amax=5).score(2e6, 40e6, 1e6) == pytest.approx(2 + 1 + 1)
    assert TinyML().as_constraints() == {"params": "<= 2e+06", "activations": "<= 5e+06"}
    assert CNAS_SCRIPT.as_constraints() == {"params": "<= 2.2e+06", "flops": "<= 7e+06", "activations": "<= 300000"}


@pytest.mark.parametrize("tuner", [NSGA2Tuner, MSuNASTuner])
@pytest.mark.parametrize("tiny,match", [({"pmax": 2.2, "amx": 1}, "tiny_ml has no key 'amx'"),
                                        ({"amax": -0.3}, r"tiny_ml.amax=-0.3 must be a number >= 0"),
                                        ([2.2], "tiny_ml=.* must be a mapping"),
                                        ({"wm": "1"}, "tiny_ml.wm='1' must be a number")])
def test_bad_tiny_ml_class_args_name_the_key(tuner: type, tiny: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tuner(objectives={"default": "maximize", "tiny_ml": "minimize"}, space="spos-digits", tiny_ml=tiny)


def test_tiny_ml_needs_a_space() -> None:
    with pytest.raises(ValueError, match="give space"):
        NSGA2Tuner(objectives={"default": "maximize", "tiny_ml": "minimize"}, tiny_ml={"pmax": 2.2})


def read_history(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_nsga2_never_dispatches_an_infeasible_architecture(tmp_path: Path) -> None:
    """Constraints on activations and params with a space are checked before dispatch; the trial reports only
    its accuracy, the tuner fills in the exact costs (tiny_ml as an objective)."""
    space = create_space("spos-digits")
    costs = ExactCosts(space)
    rng = np.random.default_rng(0)
    sample = np.array([[v["activations"], v["params"]] for v in
                       (costs.metrics(space.sample(rng)) for _ in range(200))])
    a_lim, p_lim = np.quantile(sample[:, 0], 0.5), np.quantile(sample[:, 1], 0.6)
    tiny = {"pmax": 1.0, "amax": 1.0, "wm": 1.0}
    tuner = NSGA2Tuner(objectives={"default": "maximize", "tiny_ml": "minimize"},
                       constraints={"activations": f"<= {a_lim}", "params": f"<= {p_lim}"}, space="spos-digits",
                       tiny_ml=tiny, population_size=8, seed=1, output_dir=str(tmp_path))
    done = simulate(tuner, space.to_nni(), lambda p: {"default": float(np.random.default_rng(len(str(p))).random())},
                    n_trials=32, concurrency=2)
    assert len(done) == 32 and tuner.rejected_before_dispatch > 0
    rows = read_history(tmp_path / "history.csv")
    assert len(rows) == 32
    for row in rows:
        exact = costs.metrics(json.loads(row["parameters"]))
        assert float(row["activations"]) == exact["activations"] <= a_lim
        assert float(row["params"]) == exact["params"] <= p_lim
        assert float(row["tiny_ml"]) == pytest.approx(TinyML.from_mapping(tiny).score(
            exact["params"], exact["flops"], exact["activations"]))
        assert row["feasible"] == "True"


def test_msunas_never_dispatches_an_infeasible_architecture(ofa_space, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """MSuNAS on OFA MobileNetV3 at 32/48 px: tiny_ml objective (CNAS script weights), exact activations and
    peak_activation_bytes constraints at each architecture's own resolution."""
    costs = ExactCosts(ofa_space)
    rng = np.random.default_rng(3)
    sample = np.array([[v["activations"], v["peak_activation_bytes"]] for v in
                       (costs.metrics(ofa_space.sample(rng)) for _ in range(100))])
    a_lim, m_lim = np.quantile(sample[:, 0], 0.6), np.quantile(sample[:, 1], 0.7)
    tuner = MSuNASTuner(objectives={"default": "maximize", "tiny_ml": "minimize"},
                        constraints={"activations": f"<= {a_lim}", "peak_activation_bytes": f"<= {m_lim}"},
                        space="ofa-mbv3", space_args=OFA_SMALL, tiny_ml={"pmax": 4, "mmax": 30, "amax": 0.7},
                        surrogate="rbf", initial_samples=8, batch_size=4, inner_population=12, inner_generations=3,
                        seed=0, output_dir=str(tmp_path))

    def evaluate(p: dict) -> dict:  # a stand-in accuracy that grows with depth and resolution
        return {"default": sum(p[f"d_{u}"] for u in range(5)) / 20 + p["r"] / 480, "activations": -1.0}

    simulate(tuner, ofa_space.to_nni(), evaluate, n_trials=16, concurrency=2)
    rows = read_history(tmp_path / "history.csv")
    assert len(rows) == 16 and {"activations", "peak_activation_bytes", "tiny_ml"} <= set(rows[0])
    assert {json.loads(r["parameters"])["r"] for r in rows} == {32, 48}
    for row in rows:
        exact = costs.metrics(json.loads(row["parameters"]))
        assert float(row["activations"]) == exact["activations"] <= a_lim  # the table's, not the report's -1
        assert float(row["peak_activation_bytes"]) == exact["peak_activation_bytes"] <= m_lim
        tiny = TinyML(pmax=4, mmax=30, amax=0.7).score(exact["params"], exact["flops"], exact["activations"])
        assert float(row["tiny_ml"]) == pytest.approx(tiny)


def test_polynomial_activation_swaps_every_relu(ofa_space) -> None:  # type: ignore[no-untyped-def]
    arch = ofa_space.sample(np.random.default_rng(1))
    plain = ofa_space.build(arch).eval()
    assert any(isinstance(m, nn.ReLU) for m in plain.modules())
    poly = ofa_space.build(arch, poly_activation=True).eval()
    kinds = {type(m).__name__ for m in poly.modules()}
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in poly.modules())
    assert "PolynomialActivation" in kinds and "Hswish" in kinds  # h-swish is kept, as CNAS does
    x = torch.randn(2, 3, arch["r"], arch["r"])
    with torch.no_grad():  # features after every block differ (the random net's logits are near-constant)
        a, b = (nn.Sequential(m.first_conv, *m.blocks)(x) for m in (plain, poly))
        assert (a - b).abs().max() > 0.1 * a.abs().max()
    assert PolynomialActivation()(torch.tensor([-2.0, 0.0, 3.0])).tolist() == pytest.approx([-0.96, 0.0, 1.59])
    seq = polynomial_activations(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU6(), nn.Sequential(nn.ReLU())))
    assert [type(m).__name__ for m in seq.modules()].count("PolynomialActivation") == 2
    assert count(poly, arch["r"]) == count(plain, arch["r"])


def test_cli_prints_activations_peak_and_tiny_ml(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nni_ext.cli import main

    space = create_space("spos-digits")
    arch = space.sample(np.random.default_rng(0))
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    assert main(["cost", "spos-digits", "--arch", str(tmp_path / "arch.json"), "--tiny-ml", "pmax=0.5",
                 "--tiny-ml", "wm=1"]) == 0
    out = json.loads(capsys.readouterr().out)
    c = count(space.build(arch), 32)
    assert (out["activations"], out["peak_activation_bytes"]) == (c.activations, c.peak_activation_bytes)
    assert out["tiny_ml"] == pytest.approx(TinyML(pmax=0.5, wm=1).score(c.params, c.flops, c.activations))
    bad = run_cli("cost", "spos-digits", "--tiny-ml", "pmx=2")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == ["nni-ext: error: --tiny-ml has no key 'pmx'; its keys are pmax, mmax, "
                                               "amax, wp, wm, wa, pen"]


def test_ofa2_eval_reports_activations_with_poly_activation(ofa_supernet: Path, digits_root: Path,
                                                            tmp_path: Path) -> None:
    from nni_ext.trials import ofa2_eval

    space = create_space("ofa-mbv3", num_classes=10, resolutions=[32])
    arch = space.sample(np.random.default_rng(5))
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch))
    args = ofa2_eval.build_arg_parser().parse_args([
        "--supernet", str(ofa_supernet), "--data", str(digits_root), "--arch", str(path), "--resolutions", "32",
        "--calib-images", "20", "--calib-batch-size", "10", "--val-per-class", "2", "--workers", "0",
        "--backend", "torchvision", "--device", "cpu", "--threads", "1", "--poly-activation"])
    metrics = ofa2_eval.run(args)
    exact = ExactCosts(space).metrics(arch)
    assert metrics["poly_activation"] == 1
    assert (metrics["activations"], metrics["peak_activation_bytes"]) == (exact["activations"],
                                                                          exact["peak_activation_bytes"])
    assert math.isfinite(metrics["default"])
