"""SPOS path samplers: the FLOPs-uniform histogram is flat over its bins, the fallback, bad ranges."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from nni_ext.cost import CostTable
from nni_ext.errors import NniExtError
from nni_ext.spaces import create_space
from nni_ext.spaces.spos_supernet import ShuffleNetV2Supernet
from nni_ext.trainers.sampling import FlopsUniformSampler, UniformSampler


@pytest.fixture(scope="module")
def table() -> CostTable:
    return CostTable.cached(create_space("spos"), 224)


def test_flops_uniform_histogram_is_flat(table: CostTable) -> None:
    sampler = FlopsUniformSampler(table, low=290e6, high=360e6, bins=7, seed=0)
    flops = np.array([sampler.flops(sampler.sample()) for _ in range(3500)])
    counts, _ = np.histogram(flops, bins=sampler.edges)
    assert counts.sum() >= 3490  # almost no timeouts in the official range
    assert chisquare(counts).pvalue > 0.01, counts
    # plain uniform paths are far from flat over the same bins: most fall in the middle
    uniform = UniformSampler(20, seed=0)
    plain, _ = np.histogram([sampler.flops(uniform.sample()) for _ in range(3500)], bins=sampler.edges)
    assert chisquare(plain).pvalue < 1e-6


def test_sampler_flops_equal_the_cost_table(table: CostTable) -> None:
    sampler = FlopsUniformSampler(table, low=290e6, high=360e6, seed=1)
    supernet = ShuffleNetV2Supernet(table.space)
    for _ in range(20):
        path = sampler.sample()
        assert sampler.flops(path) == table.cost(supernet.arch_of(path)).flops


def test_sampler_is_seeded_and_resumable(table: CostTable) -> None:
    a = FlopsUniformSampler(table, low=290e6, high=360e6, seed=5)
    first = [a.sample() for _ in range(10)]
    state = a.state_dict()
    rest = [a.sample() for _ in range(10)]
    b = FlopsUniformSampler(table, low=290e6, high=360e6, seed=5)
    assert [b.sample() for _ in range(10)] == first
    b.load_state_dict(state)
    assert [b.sample() for _ in range(10)] == rest


def test_timeout_falls_back_to_an_unconstrained_path(table: CostTable) -> None:
    # a one-MFLOP-wide range just above the cheapest architectures: hardly ever hit
    sampler = FlopsUniformSampler(table, low=271e6, high=272e6, bins=1, max_draws=5, seed=0)
    paths = [sampler.sample() for _ in range(20)]
    assert sampler.timeouts >= 15 and all(len(p) == 20 for p in paths)


def test_range_outside_the_space_names_its_bounds(table: CostTable) -> None:
    with pytest.raises(NniExtError, match=r"misses the space, whose architectures have 2\.7\d+e\+08 to"):
        FlopsUniformSampler(table, low=1e6, high=2e6)
    with pytest.raises(NniExtError, match="must be below"):
        FlopsUniformSampler(table, low=3e8, high=2e8)
