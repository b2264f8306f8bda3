"""Shared fixtures: the embedded digits dataset, the shared OFA data, a CLI runner and an nnictl runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_OFA = Path(os.environ.get("NNI_EXT_SHARED", REPO.parent / "shared")) / "data" / "ofa"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep cost-table caches and NNI's registered-algorithms file out of the user's home."""
    os.environ["NNI_EXT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["NNI_CONFIG_DIR"] = str(tmp_path_factory.mktemp("nni_config"))


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nni_ext.data import write_digits

    root = tmp_path_factory.mktemp("digits")
    write_digits(root, size=32)
    return root


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module's tests (2 shared cores: more threads only spin); restored afterwards.

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ofa_data() -> Path:
    if not SHARED_OFA.is_dir():
        pytest.skip(f"OFA reference data not found at {SHARED_OFA} (set NNI_EXT_SHARED)")
    return SHARED_OFA


def venv_env() -> dict[str, str]:
    """Environment whose PATH finds this interpreter's scripts (nnictl, nni-ext, python)."""
    bindir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))


def run_cli(*args: str, cwd: str | Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``nni-ext ARGS`` in a subprocess (as a user would) and capture its output."""
    return subprocess.run([sys.executable, "-m", "nni_ext", *args], cwd=cwd, env=venv_env(), capture_output=True,
                          text=True, timeout=timeout)


def run_until_done(config: dict[str, Any], folder: Path, *, timeout: float = 800) -> tuple[list[Any], Path]:
    """Write ``config`` to ``folder/config.yml`` and run it under nnictl until DONE; every trial must succeed.

    Returns the trials and the experiment's directory; the experiment is stopped whatever happens.
    """
    import yaml

    from nni_ext import experiment

    (folder / "config.yml").write_text(yaml.safe_dump(config))
    exp = experiment.create(folder / "config.yml")
    try:
        assert exp.wait(timeout=timeout) == "DONE", exp.status()
        trials, directory = exp.trials(), exp.directory
    finally:
        exp.stop()
    assert trials and all(t.status == "SUCCEEDED" for t in trials), [t.status for t in trials]
    return trials, directory


@pytest.fixture(scope="session")
def ofa_supernet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised OFA supernet checkpoint (10 classes), shared by the OFA³ tests."""
    from .ofa3_fixtures import init_ofa_supernet

    return init_ofa_supernet(tmp_path_factory.mktemp("ofa3_supernet") / "supernet.pth")


@pytest.fixture(scope="session")
def digits_search_root(digits_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits' search subset (4 images per class in val/, the rest of train in train/), kept apart from val."""
    from .ofa3_fixtures import search_subset

    return search_subset(digits_root, tmp_path_factory.mktemp("ofa3_search") / "search")
