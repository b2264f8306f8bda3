"""The name -> pymoo algorithm catalogue (nni_ext.core.algorithms): names, building, reference directions, errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nni_ext.core.algorithms import (
    algorithm_names,
    algorithm_spec,
    canonical_algorithm,
    make_algorithm,
    reference_directions,
)

NAMES = ("nsga2", "smsemoa", "spea2", "nsga3", "agemoea")
CLASSES = {"nsga2": "NSGA2", "smsemoa": "SMSEMOA", "spea2": "SPEA2", "nsga3": "NSGA3", "agemoea": "AGEMOEA"}
UNKNOWN = "choose one of nsga2, smsemoa, spea2, nsga3, agemoea"


def test_names_and_spellings() -> None:
    assert algorithm_names() == NAMES
    for name in NAMES:
        assert canonical_algorithm(name) == canonical_algorithm(name.upper()) == name
    spellings = {"NSGA-II": "nsga2", "nsga_ii": "nsga2", "SMS-EMOA": "smsemoa", "Spea2": "spea2",
                 "NSGA-III": "nsga3", "AGE-MOEA": "agemoea", "AgeMoea": "agemoea"}
    for spelling, name in spellings.items():
        assert canonical_algorithm(spelling) == name
    assert algorithm_spec("NSGA2").target == "pymoo.algorithms.moo.nsga2:NSGA2"
    assert algorithm_spec("agemoea").target == "pymoo.algorithms.moo.age:AGEMOEA"
    # only NSGA-II's parent selection is the binary tournament that pymoo_tools vectorises, and AGE-MOEA's
    assert [n for n in NAMES if algorithm_spec(n).selection == "binary_tournament"] == ["nsga2", "agemoea"]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_builds_and_runs(name: str) -> None:
    from pymoo.optimize import minimize
    from pymoo.problems import get_problem

    algo = make_algorithm(name.upper(), pop_size=12, n_obj=2, seed=3)
    assert type(algo).__name__ == CLASSES[name] and algo.pop_size == 12 and algo.seed == 3
    assert isinstance(algo, algorithm_spec(name).load())
    res = minimize(get_problem("zdt1", n_var=6), algo, ("n_gen", 3), seed=1, verbose=False)
    assert len(res.pop) == 12 and np.isfinite(res.F).all()


def test_operators_and_options_pass_through() -> None:
    from pymoo.operators.sampling.rnd import IntegerRandomSampling

    sampling = IntegerRandomSampling()
    algo = make_algorithm("spea2", pop_size=10, n_obj=2, n_offsprings=4, seed=5, sampling=sampling,
                          eliminate_duplicates=False)
    assert algo.n_offsprings == 4 and algo.seed == 5 and algo.initialization.sampling is sampling
    assert type(algo.eliminate_duplicates).__name__ == "NoDuplicateElimination"
    own = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    assert make_algorithm("nsga3", pop_size=3, n_obj=2, ref_dirs=own).ref_dirs is own


@pytest.mark.parametrize("n_obj,pop_size", [(2, 100), (2, 7), (3, 15), (3, 20)])
def test_nsga3_gets_one_reference_direction_per_individual(n_obj: int, pop_size: int) -> None:
    algo = make_algorithm("nsga3", pop_size=pop_size, n_obj=n_obj)
    R = algo.ref_dirs
    assert R.shape == (pop_size, n_obj) and algo.pop_size == pop_size
    assert (R >= -1e-12).all() and np.allclose(R.sum(axis=1), 1.0)  # on the unit simplex
    assert len(np.unique(np.round(R, 9), axis=0)) == pop_size  # all distinct


def test_reference_directions_are_seeded_and_deterministic() -> None:
    # 20 points in 3-D: no Das-Dennis lattice has exactly 20 (15, 21), so these are energy directions
    first, again = reference_directions(3, 20, seed=4), reference_directions(3, 20, seed=4)
    np.testing.assert_array_equal(first, again)
    assert reference_directions(3, 20).shape == (20, 3)
    lattice = reference_directions(2, 5)  # Das-Dennis: evenly spaced
    np.testing.assert_allclose(np.sort(lattice[:, 0]), [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_array_equal(reference_directions(1, 8), [[1.0]])  # one objective: one direction


def test_nsga3_single_objective_falls_back_to_one_direction() -> None:
    from pymoo.optimize import minimize
    from pymoo.problems import get_problem

    algo = make_algorithm("nsga3", pop_size=10, n_obj=1)
    assert algo.ref_dirs.shape == (1, 1) and algo.pop_size == 10
    res = minimize(get_problem("sphere", n_var=3), algo, ("n_gen", 3), seed=1, verbose=False)
    assert np.isfinite(res.F).all()


@pytest.mark.parametrize("name", ["moead", "", "nsga", None, 3])
def test_unknown_name_names_the_catalogue(name) -> None:
    with pytest.raises(ValueError) as info:
        canonical_algorithm(name)
    assert str(info.value) == f"unknown algorithm {name!r}; {UNKNOWN}"
    with pytest.raises(ValueError, match=UNKNOWN):
        make_algorithm(name, pop_size=10, n_obj=2)


@pytest.mark.parametrize("pop_size", [1, 0, -4, 2.0, 10.5, True, "10", None])
def test_bad_pop_size(pop_size) -> None:
    with pytest.raises(ValueError, match=r"^pop_size=.* must be an integer of at least 2$"):
        make_algorithm("nsga2", pop_size=pop_size, n_obj=2)


def test_bad_n_obj_and_n_offsprings() -> None:
    with pytest.raises(ValueError, match="^n_obj=0 must be an integer of at least 1"):
        make_algorithm("nsga3", pop_size=10, n_obj=0)
    with pytest.raises(ValueError, match="^n_offsprings=0 must be an integer of at least 1"):
        make_algorithm("nsga2", pop_size=10, n_obj=2, n_offsprings=0)
    assert make_algorithm("nsga2", pop_size=np.int64(6), n_obj=np.int32(2)).pop_size == 6


def test_listing_names_imports_no_pymoo_and_nothing_else_of_nni_ext() -> None:
    """The CLI builds its --algorithm help from the catalogue: that must not import pymoo (nor the rest of nni_ext)."""
    code = ("import sys; import nni_ext.core; before = set(sys.modules); "
            "from nni_ext.core.algorithms import algorithm_names, canonical_algorithm; "
            "algorithm_names(); canonical_algorithm('NSGA2'); "
            "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('nni_ext', 'pymoo', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['nni_ext.core.algorithms']"
