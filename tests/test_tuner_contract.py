"""Every registered tuner keeps the tuner contract (nni_ext.testing.tuner_contract), found by registry."""
from __future__ import annotations

import pytest

from nni_ext.testing.tuner_contract import TunerContract, contract_params


@pytest.mark.parametrize("name", contract_params())
class TestTunerContract(TunerContract):
    pass


def test_the_registry_holds_every_tuner_of_the_package() -> None:
    assert {"NSGA2", "SMSEMOA", "SPEA2", "NSGA3", "AGEMOEA", "EvolutionWithFlops", "EvolutionWithLatency",
            "ConstrainedRandom", "OFA3Ensemble", "RegularizationSweep"} <= set(contract_params())
