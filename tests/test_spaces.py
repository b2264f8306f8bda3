"""Search-space registry, validation, NNI export and the checked-in search_spaces/ files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nni_ext.errors import ArchitectureError, NniExtError
from nni_ext.spaces import SposShuffleNetV2Space, create_space, list_spaces
from nni_ext.ss_gen import search_space_json

from .conftest import REPO


def test_spos_space_has_the_published_labels_and_candidates() -> None:
    space = create_space("spos")
    assert space.labels == [f"layer_{i}" for i in range(1, 21)]
    assert space.choices()["layer_7"] == ["shufflenet_3x3", "shufflenet_5x5", "shufflenet_7x7", "xception_3x3"]
    strides = [s for _, _, s in space.layer_specs]
    assert [i for i, s in enumerate(strides) if s == 2] == [0, 4, 8, 16]


@pytest.mark.parametrize("name", list_spaces())
def test_checked_in_search_space_matches_code(name: str) -> None:
    path = REPO / "search_spaces" / f"{name}.json"
    assert path.exists(), f"run `nni-ext ss_gen {name} -o search_spaces/{name}.json`"
    assert path.read_text() == search_space_json(create_space(name)), f"{path} drifted from the code; re-export it"


# the NNI export round trip of every registered space: tests/test_space_contract.py


def test_validate_names_the_bad_label_and_allowed_values() -> None:
    space = create_space("spos")
    arch = space.official_architecture()
    with pytest.raises(ArchitectureError, match=r"missing label 'layer_20'.*shufflenet_3x3"):
        space.validate({k: v for k, v in arch.items() if k != "layer_20"})
    with pytest.raises(ArchitectureError, match=r"unknown label 'layer_99'"):
        space.validate({**arch, "layer_99": "shufflenet_3x3"})
    with pytest.raises(ArchitectureError, match=r"label 'layer_3' has value \"conv\".*xception_3x3"):
        space.validate({**arch, "layer_3": "conv"})
    with pytest.raises(ArchitectureError, match="label 'layer_3' has value 1"):
        space.validate({**arch, "layer_3": 1})
    # NNI's {"_value": ..., "_idx": ...} wrapping is accepted
    wrapped = {k: {"_value": v, "_idx": 0} for k, v in arch.items()}
    assert space.validate(wrapped) == arch


def test_create_space_by_module_reference_and_unknown_name() -> None:
    space = create_space("nni_ext.spaces.spos:SposShuffleNetV2Space", num_classes=10)
    assert isinstance(space, SposShuffleNetV2Space) and space.config["num_classes"] == 10
    with pytest.raises(NniExtError, match="unknown search space 'nope'; registered spaces: .*spos"):
        create_space("nope")
    with pytest.raises(NniExtError, match="cannot load search space"):
        create_space("nni_ext.spaces:Missing")


def test_built_network_runs_and_outputs_classes() -> None:
    space = SposShuffleNetV2Space(num_classes=10)
    model = space.build(space.sample(np.random.default_rng(3))).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_fingerprint_depends_on_configuration() -> None:
    assert create_space("spos").fingerprint() == create_space("spos").fingerprint()
    assert create_space("spos").fingerprint() != create_space("spos", num_classes=10).fingerprint()


def test_checked_in_official_spos_architecture() -> None:
    arch = json.loads((REPO / "search_spaces" / "spos_official_architecture.json").read_text())
    candidates = create_space("spos").choices()["layer_1"]
    assert [candidates.index(arch[f"layer_{i}"]) for i in range(1, 21)] == \
        [2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3]
