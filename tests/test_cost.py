"""Exact counting against torchvision's published figures, lookup tables, latency measurement and tables."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from nni_ext.cost import (
    CostTable,
    LatencyTable,
    build_latency_table,
    count,
    load_resolution_tables,
    measure_latency,
    ofa_layer_key,
)
from nni_ext.errors import TableError
from nni_ext.spaces import create_space

from .conftest import run_cli


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_large", "shufflenet_v2_x1_0",
                                  "efficientnet_b0"])
def test_count_matches_torchvision_metadata(name: str) -> None:
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    cost = count(torchvision.models.get_model(name), input_size=(1, 3, 224, 224))
    assert cost.params == meta["num_params"]
    assert cost.flops == pytest.approx(meta["_ops"] * 1e9, rel=0.002)  # _ops is GMACs
    assert cost.flops == pytest.approx(meta["_ops"] * 1e9, abs=0.5e6)  # _ops is rounded to 3 decimals (1M MACs)


@pytest.mark.parametrize("name", ["vit_b_16", "swin_t", "maxvit_t", "swin_v2_t"])
def test_count_matches_torchvision_metadata_beyond_cnns(name: str) -> None:
    """Transformers and attention models match torchvision's published GMACs at their evaluation crop.

    The tolerance is the rounding of ``_ops`` (3 decimals of G, so half of 1M MACs). Before attention
    was counted, ViT-B/16 gave 11.27 G (the fused nn.MultiheadAttention fast path was invisible) and
    16.85 G without the fast path (the CPU flash kernel of scaled_dot_product_attention had no formula).
    """
    weights = torchvision.models.get_model_weights(name).DEFAULT
    size = weights.transforms().crop_size[0]  # 224, and 256 for swin_v2_t
    cost = count(torchvision.models.get_model(name, weights=None), input_size=size)
    assert cost.params == weights.meta["num_params"]
    assert cost.flops == pytest.approx(weights.meta["_ops"] * 1e9, abs=0.5e6)


def _fastpath_enabled() -> bool:
    return torch.backends.mha.get_fastpath_enabled()


def test_count_sees_multihead_attention_fast_path_and_restores_it() -> None:
    """nn.MultiheadAttention and nn.TransformerEncoderLayer in eval mode: projections, Q Kᵀ and A V all count."""
    d, heads, ff, length = 64, 4, 96, 10
    layer = torch.nn.TransformerEncoderLayer(d, heads, dim_feedforward=ff, batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    per_layer = length * 4 * d * d + 2 * length * length * d + length * 2 * d * ff
    x = torch.randn(3, length, d)
    assert _fastpath_enabled()
    assert count(encoder, inputs=x).flops == 3 * 2 * per_layer

    class SelfAttention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = torch.nn.MultiheadAttention(d, heads, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mha(x, x, x, need_weights=False)[0]

    assert count(SelfAttention(), inputs=x).flops == 3 * (length * 4 * d * d + 2 * length * length * d)
    assert _fastpath_enabled()

    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert not _fastpath_enabled()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        count(Broken(), inputs=x)
    assert _fastpath_enabled()


@pytest.mark.parametrize("dim_v", [16, 8])  # on CPU: 16 runs the fused flash kernel, 8 the decomposed math path
def test_count_sees_scaled_dot_product_attention(dim_v: int) -> None:
    """A module calling F.scaled_dot_product_attention directly: Q Kᵀ (L·S·E) plus A V (L·S·Ev) per head."""

    class Attend(torch.nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    batch, heads, length, source, dim = 2, 4, 10, 7, 16
    q, k, v = (torch.randn(batch, heads, length, dim), torch.randn(batch, heads, source, dim),
               torch.randn(batch, heads, source, dim_v))
    assert count(Attend(), inputs=(q, k, v)).flops == batch * heads * length * source * (dim + dim_v)


def test_spos_official_architecture_matches_published_cost() -> None:
    space = create_space("spos")
    cost = count(space.build(space.official_architecture()), 224)
    assert cost.flops == pytest.approx(323e6, rel=0.002)  # published: 323M FLOPs, 3.5M params
    assert 3.45e6 <= cost.params <= 3.6e6


def test_count_leaves_batchnorm_state_and_mode_untouched() -> None:
    model = torchvision.models.resnet18()
    model.train()
    before = model.bn1.running_mean.clone()
    count(model, 64)
    assert model.training
    assert torch.equal(model.bn1.running_mean, before)


@pytest.mark.parametrize("input_size,space_args", [(224, {}), (32, {"num_classes": 10})])
def test_table_sum_equals_exact_count(input_size: int, space_args: dict) -> None:
    space = create_space("spos", **space_args)
    table = CostTable.build(space, input_size)
    rng = np.random.default_rng(input_size)
    for _ in range(12):
        arch = space.sample(rng)
        assert table.cost(arch) == count(space.build(arch), input_size)


def test_table_is_cached_and_checked(tmp_path) -> None:
    space = create_space("spos")
    first = CostTable.cached(space, 64, cache_dir=tmp_path)
    files = list((tmp_path / "cost_tables").glob("spos-*-64.json"))
    assert len(files) == 1
    assert CostTable.cached(space, 64, cache_dir=tmp_path).entries == first.entries
    with pytest.raises(TableError, match="built for another space or configuration"):
        CostTable.load(files[0], create_space("spos", num_classes=10))
    files[0].write_text("{not json")
    with pytest.raises(TableError, match="delete it to rebuild"):
        CostTable.load(files[0], space)
    assert CostTable.cached(space, 64, cache_dir=tmp_path).entries == first.entries  # rebuilt over the bad file
    assert json.loads(files[0].read_text())["input_size"] == 64


def test_cost_many_vectorises() -> None:
    space = create_space("spos")
    table = CostTable.cached(space, 224)
    archs = [space.sample(np.random.default_rng(i)) for i in range(5)]
    out = table.cost_many(archs)
    assert out.shape == (5, 2)
    assert out[2].tolist() == [table.cost(archs[2]).flops, table.cost(archs[2]).params]


def test_measure_latency_reports_sane_statistics() -> None:
    lat = measure_latency(torchvision.models.resnet18(), 64, device="cpu", warmup=1, repeats=5)
    assert lat.device == "cpu" and lat.repeats == 5
    assert 0 < lat.min_ms <= lat.median_ms
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(torch.nn.Identity(), 8, repeats=0)


def test_ofa_note10_tables_load_and_keys_match(ofa_data) -> None:
    tables = load_resolution_tables(ofa_data / "note10")
    assert sorted(tables) == [160, 176, 192, 208, 224]
    for r, table in tables.items():
        stem = ofa_layer_key("Conv", (r, r, 3), (r // 2, r // 2, 24))
        assert table.mean(stem) > 0
        first_block = ofa_layer_key("expanded_conv", (r // 2, r // 2, 24), (r // 2, r // 2, 24), expand=24,
                                    kernel=3, stride=1, idskip=1)
        assert first_block in table
        assert table.predict([stem, first_block]) == pytest.approx(table.mean(stem) + table.mean(first_block))
    assert tables[224].mean("Conv-input:224x224x3-output:112x112x24") == pytest.approx(0.994418)
    with pytest.raises(TableError, match="no entry 'Conv-input:225x225x3"):
        tables[224].mean(ofa_layer_key("Conv", (225, 225, 3), (113, 113, 24)))


def test_latency_table_errors(tmp_path) -> None:
    (tmp_path / "bad.yaml").write_text("a: {std: 1}\n")
    with pytest.raises(TableError, match="entry 'a' has no numeric 'mean'"):
        LatencyTable.load(tmp_path / "bad.yaml")
    with pytest.raises(TableError, match="cannot read latency table"):
        LatencyTable.load(tmp_path / "missing.yaml")
    with pytest.raises(TableError, match="no '<resolution>_lookup_table.yaml'"):
        load_resolution_tables(tmp_path)


def test_built_latency_table_predicts_spos_networks(tmp_path) -> None:
    space = create_space("spos", num_classes=10)
    table = build_latency_table(space, 32, device="cpu", warmup=0, repeats=2, progress=False)
    assert len(table) == len(space.all_cost_units(32)) == 82
    table.save(tmp_path / "spos32.yaml")
    reloaded = LatencyTable.load(tmp_path / "spos32.yaml")
    arch = space.official_architecture()
    units = space.latency_keys(arch, 32)
    assert reloaded.predict(units) == pytest.approx(sum(table.mean(u) for u in units))
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    proc = run_cli("cost", "spos", "--arch", str(tmp_path / "arch.json"), "--input-size", "32", "--space-arg",
                   "num_classes=10", "--latency-table", str(tmp_path / "spos32.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["latency_table_ms"] == pytest.approx(reloaded.predict(units))
    proc = run_cli("cost", "spos", "--latency-table", str(tmp_path / "spos32.yaml"))  # 224px keys are absent
    assert proc.returncode == 2
    assert "has no entry 'stem@224px'" in proc.stderr and "Traceback" not in proc.stderr
