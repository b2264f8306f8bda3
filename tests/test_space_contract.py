"""The search-space contract, checked for every registered space (the timm way: one parametrised suite).

For each name of ``nni_ext.spaces.list_spaces()``:

1. a sampled architecture builds and runs forward at the space's ``default_input_size``, giving
   ``(batch, num_classes)`` finite logits;
2. the cost lookup table (``CostTable``) gives exactly what counting the built network gives
   (``nni_ext.cost.count``) for 3 seeded random architectures;
3. the NNI export round-trips: ``search_space_json`` -> ``ParameterSpace`` keeps every label and its
   candidates (values and types, in order), and what NNI samples from it is accepted by ``space.validate``
   unchanged, also after a JSON round trip.

Cost tables are part of the :class:`~nni_ext.spaces.base.SearchSpace` protocol (``cost_units``,
``all_cost_units`` and ``build_cost_unit`` are abstract), so no space may opt out: a space that cannot
do one of these fails here, with the space's name in the message.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from nni_ext.cost import CostTable, count
from nni_ext.spaces import SearchSpace, create_space, list_spaces
from nni_ext.ss_gen import search_space_json
from nni_ext.tuners import ParameterSpace

#: constructor arguments that keep a space small enough for a few seconds per case on 2 CPU cores;
#: a space not listed is built with its defaults
SMALL_ARGS: dict[str, dict[str, Any]] = {
    "spos": {"num_classes": 10},
    "spos-digits": {},  # already small: 10 classes, 32 px, narrow stages
    "ofa-mbv3": {"num_classes": 10},
    "ofa-mbv3-ee": {"num_classes": 10},  # at 1000 classes an unpooled stage-1 exit head at 224 px has 401M params
}
BATCH = 2
N_ARCHS = 3


@pytest.fixture(scope="module", params=list_spaces())
def name(request: pytest.FixtureRequest) -> str:
    """Each registered name (``spos-digits`` builds a space whose ``name`` is ``spos``: messages use this)."""
    return request.param


@pytest.fixture(scope="module")
def space(name: str) -> SearchSpace:
    """The space registered as ``name``, built once per module with its small arguments."""
    return create_space(name, **SMALL_ARGS.get(name, {}))


def seeded_archs(space: SearchSpace, n: int = N_ARCHS) -> list[dict[str, Any]]:
    rng = np.random.default_rng(2026)
    return [space.sample(rng) for _ in range(n)]


def test_builds_and_runs_forward_at_its_input_size(name: str, space: SearchSpace) -> None:
    num_classes = space.config.get("num_classes")
    assert isinstance(num_classes, int), (f"space {name!r} keeps no integer num_classes in its config "
                                          f"({space.config}): the contract cannot tell its output width")
    size = space.default_input_size
    arch = seeded_archs(space, 1)[0]
    model = space.build(arch).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(torch.randn(BATCH, 3, size, size))
    assert tuple(out.shape) == (BATCH, num_classes), \
        f"space {name!r} at {size}px gave logits of shape {tuple(out.shape)}, not {(BATCH, num_classes)}"
    assert torch.isfinite(out).all(), f"space {name!r} at {size}px gave non-finite logits for {arch}"


def test_cost_table_equals_exact_count(name: str, space: SearchSpace) -> None:
    size = space.default_input_size
    table = CostTable.build(space, size)
    assert set(table.entries) == set(space.all_cost_units(size))
    for arch in seeded_archs(space):
        units = space.cost_units(arch, size)
        missing = [u for u in units if u not in table.entries]
        assert not missing, f"space {name!r}: cost units {missing} of {arch} are not in all_cost_units({size})"
        exact = count(space.build(arch), size)
        assert table.cost(arch) == exact, \
            f"space {name!r} at {size}px: cost table says {table.cost(arch)}, counting says {exact} for {arch}"


@pytest.mark.parametrize("args", ["default", "small"])
def test_nni_export_round_trips(name: str, space: SearchSpace, args: str) -> None:
    """``default``: the space as ``nni-ext ss_gen NAME`` exports it; ``small``: the one the other checks use."""
    space = create_space(name) if args == "default" else space
    exported = json.loads(search_space_json(space))
    assert all(spec["_type"] == "choice" for spec in exported.values())
    params = ParameterSpace(exported)
    choices = space.choices()
    assert params.names == space.labels == list(choices), f"space {name!r}: labels changed in the export"
    for p in params.parameters:
        allowed = choices[p.name]
        assert list(p.args) == allowed and [type(v) for v in p.args] == [type(v) for v in allowed], \
            f"space {name!r}: label {p.name!r} exported as {list(p.args)}, the space has {allowed}"
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = params.sample(rng)
        assert space.validate(arch) == arch
        assert space.validate(json.loads(json.dumps(arch))) == arch
