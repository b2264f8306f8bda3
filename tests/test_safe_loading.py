"""A checkpoint is never code: every ``torch.load`` reader uses ``weights_only=True``.

For each reader (SPOS checkpoints, PC-DARTS state files, ``predictions.pt``) a crafted pickle whose
``__reduce__`` would touch a marker file is refused without running anything, as one
:class:`NniExtError` line (exit code 2 through the CLI); files written by the readers' own writers
still round-trip, and so do files of older versions (NumPy RNG state as an array).
"""
from __future__ import annotations

import json
import os
import pathlib
import pickle
import random
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from nni_ext.cli import main
from nni_ext.errors import NniExtError
from nni_ext.pcdarts.ensemble_models import ensemble_trained_models
from nni_ext.spaces import create_space
from nni_ext.spaces.spos_supernet import ShuffleNetV2Supernet
from nni_ext.trainers.checkpoint import (
    FORMAT,
    check_plain,
    load_supernet,
    read_checkpoint,
    safe_torch_load,
    save_checkpoint,
)
from nni_ext.trainers.runtime import EpochStateFile, capture_rng, restore_rng
from nni_ext.trainers.sampling import UniformSampler

from .conftest import run_cli, venv_env

SMALL = {"stage_repeats": [1, 1], "stage_channels": [16, 32]}
SMALL_ARGS = ["--space", "spos-digits", "--space-arg", "stage_repeats=[1,1]", "--space-arg", "stage_channels=[16,32]"]


class Payload:
    """Unpickling this runs ``os.system("touch MARKER")`` or ``Path(MARKER).touch()``."""

    def __init__(self, marker: Path, how: str) -> None:
        self.marker, self.how = marker, how

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if self.how == "system":
            return os.system, (f"touch {shlex.quote(str(self.marker))}",)
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def write_malicious(path: Path, marker: Path, *, writer: str, how: str = "system") -> Path:
    """A file that looks like every nni_ext file (format tag, kind, state keys) and carries a payload."""
    payload = {"evil": Payload(marker, how), "format": FORMAT, "kind": "spos_supernet", "config": {}, "epoch": 1,
               "history": [], "rng": {}, "test": {"logits": torch.zeros(2, 3), "labels": torch.zeros(2)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    if writer == "torch.save":
        torch.save(payload, path)
    else:  # a plain pickle: the default protocol (framed), or protocol 2 (GLOBAL os.system reached at once)
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2 if writer == "pickle-2" else pickle.DEFAULT_PROTOCOL)
    return path


def _pcdarts_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps({"params": 10}))
    return folder / "predictions.pt"


# reader name -> (where the malicious file goes under tmp, how the reader is called on tmp)
READERS: dict[str, tuple[Callable[[Path], Path], Callable[[Path], Any]]] = {
    "read_checkpoint": (lambda tmp: tmp / "checkpoint.pth", lambda tmp: read_checkpoint(tmp / "checkpoint.pth")),
    "load_supernet": (lambda tmp: tmp / "checkpoint.pth", lambda tmp: load_supernet(tmp / "checkpoint.pth")),
    "safe_torch_load": (lambda tmp: tmp / "file.pt", lambda tmp: safe_torch_load(tmp / "file.pt", "file")),
    "EpochStateFile.load": (lambda tmp: tmp / "search_state.pt",
                            lambda tmp: EpochStateFile(tmp / "search_state.pt", fingerprint={}, what="search").load(
                                {}, {})),
    "pcdarts ensemble": (lambda tmp: _pcdarts_folder(tmp / "m"),
                         lambda tmp: ensemble_trained_models([tmp / "m", tmp / "m"], weighting="equal")),
}
WRITERS = [("torch.save", "system"), ("torch.save", "touch"), ("pickle", "system"), ("pickle-2", "touch"),
           ("pickle-2", "system")]


def test_the_payload_is_live(tmp_path: Path) -> None:
    """Control: an unrestricted unpickler does run the payload, so the refusals below mean something."""
    for how in ("system", "touch"):
        marker = tmp_path / f"pwned-{how}"
        path = write_malicious(tmp_path / f"{how}.pkl", marker, writer="pickle-2", how=how)
        with open(path, "rb") as f:
            pickle.load(f)  # noqa: S301 - on purpose
        assert marker.exists()


@pytest.mark.parametrize("writer,how", WRITERS, ids=[f"{w}-{h}" for w, h in WRITERS])
@pytest.mark.parametrize("reader", list(READERS))
def test_a_malicious_file_runs_nothing_and_is_one_line(reader: str, writer: str, how: str, tmp_path: Path) -> None:
    place, read = READERS[reader]
    marker = tmp_path / "pwned"
    path = write_malicious(place(tmp_path), marker, writer=writer, how=how)
    with pytest.raises(NniExtError) as info:
        read(tmp_path)
    message = str(info.value)
    assert not marker.exists(), "the pickle ran code"
    assert "\n" not in message and str(path) in message, message
    assert "cannot read" in message and "safely" in message and "nothing in it was run" in message, message
    if writer != "pickle":  # the framed pickle is refused at its first opcode, before any global is named
        assert any(name in message for name in ("posix.system", "getattr", "pathlib")), message


# --------------------------------------------------------------------------------------- through the CLIs
def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("nni-ext: error: "), stderr
    return lines[0]


def test_cli_pcdarts_ensemble_refuses_a_malicious_predictions_file(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = write_malicious(_pcdarts_folder(tmp_path / "m"), marker, writer="torch.save")
    proc = run_cli("pcdarts", "ensemble", str(tmp_path / "m"), str(tmp_path / "m"), "--weights", "equal", timeout=60)
    assert proc.returncode == 2 and not marker.exists()
    assert str(bad) in _one_line(proc.stderr)


def test_spos_tester_refuses_a_malicious_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = write_malicious(tmp_path / "checkpoint.pth", marker, writer="pickle-2", how="touch")
    proc = subprocess.run([sys.executable, "-m", "nni_ext.trials.spos_tester", "--checkpoint", str(bad), "--data",
                           str(tmp_path)], env=venv_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and not marker.exists()
    line = _one_line(proc.stderr)
    assert str(bad) in line and "safely" in line


def test_cli_train_supernet_resume_refuses_a_malicious_checkpoint(digits_root: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    bad = write_malicious(tmp_path / "out" / "checkpoint.pth", marker, writer="torch.save")
    argv = ["spos", "train-supernet", *SMALL_ARGS, "--data", str(digits_root), "--steps", "2", "--batch-size", "16",
            "--backend", "torchvision", "--workers", "0", "--output", str(tmp_path / "out"), "--quiet",
            "--val-per-class", "2", "--resume"]
    assert main(argv) == 2 and not marker.exists()
    assert str(bad) in _one_line(capsys.readouterr().err)


def test_cli_ofa3_tables_refuses_a_malicious_spos_checkpoint(digits_root: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    bad = write_malicious(tmp_path / "supernet.pth", marker, writer="torch.save")  # tagged: detected as SPOS
    space = create_space("spos-digits", **SMALL)
    (tmp_path / "archs.json").write_text(json.dumps([space.sample(np.random.default_rng(0))]))
    for kind in ("auto", "spos"):
        assert main(["ofa3", "tables", "--population", str(tmp_path / "archs.json"), "--supernet", str(bad),
                     "--space", kind, "--data", str(digits_root), "--out", str(tmp_path / "t"), "--device", "cpu"]) == 2
        assert str(bad) in _one_line(capsys.readouterr().err) and not marker.exists()


def test_cli_pcdarts_search_refuses_a_malicious_state_file(digits_root: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    bad = write_malicious(tmp_path / "o" / "search_state.pt", marker, writer="pickle-2")
    argv = ["pcdarts", "search", "--data", str(digits_root), "--out", str(tmp_path / "o"), "--nu", "0.1",
            "--image-size", "16", "--subsample", "0.1", "--epochs", "1", "--init-channels", "4", "--layers", "3",
            "--device", "cpu"]
    assert main(argv) == 2 and not marker.exists()
    assert str(bad) in _one_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------- broken, but harmless, files
@pytest.mark.parametrize("content,needle", [(b"", "ends early"), (b"hello\n", "not a PyTorch file"),
                                            (None, "truncated"), ([1, 2], None)],
                         ids=["empty", "text", "truncated", "a-list"])
@pytest.mark.parametrize("reader", ["read_checkpoint", "EpochStateFile.load", "pcdarts ensemble"])
def test_a_broken_file_is_one_line_naming_it(reader: str, content: bytes | list | None, needle: str | None,
                                             tmp_path: Path) -> None:
    place, read = READERS[reader]
    path = place(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        torch.save({"x": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif isinstance(content, list):
        torch.save(content, path)
    else:
        path.write_bytes(content)
    with pytest.raises(NniExtError) as info:
        read(tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    if needle:
        assert needle in message, message


# ------------------------------------------------------------------------------------------ round trips
def _trained_bits() -> tuple[ShuffleNetV2Supernet, torch.optim.Optimizer, Any, UniformSampler]:
    torch.manual_seed(0)
    model = ShuffleNetV2Supernet(create_space("spos-digits", **SMALL))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / 10)
    sampler = UniformSampler(2, seed=3)
    x = torch.randn(2, 3, 32, 32)
    model(x, sampler.sample()).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched, sampler


def _draws() -> tuple[list[float], float, list[float]]:
    return np.random.rand(3).tolist(), random.random(), torch.rand(3).tolist()


def test_save_checkpoint_round_trips_with_weights_only(tmp_path: Path) -> None:
    model, opt, sched, sampler = _trained_bits()
    space = model.space
    rng = capture_rng()
    expected = _draws()
    save_checkpoint(tmp_path / "c.pth", model=model, space=space, kind="spos_supernet", step=1,
                    optimizer=opt.state_dict(), scheduler=sched.state_dict(), sampler=sampler.state_dict(), rng=rng,
                    history=[{"step": 1.0}], args={"run": {"data": str(tmp_path)}, "crop_size": 32}, total_steps=10)
    torch.load(tmp_path / "c.pth", weights_only=True)  # plain: no allow-listing needed
    loaded, ckpt = load_supernet(tmp_path / "c.pth")
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert ckpt["scheduler"] == sched.state_dict() and ckpt["sampler"] == sampler.state_dict()
    momenta = zip(opt.state_dict()["state"].values(), ckpt["optimizer"]["state"].values())
    assert all(torch.equal(a["momentum_buffer"], b["momentum_buffer"]) for a, b in momenta)
    restore_rng(ckpt["rng"])
    assert _draws() == expected
    again = UniformSampler(2, seed=99)
    again.load_state_dict(ckpt["sampler"])
    assert again.sample() == sampler.sample()


def test_a_checkpoint_of_an_older_version_still_loads(tmp_path: Path) -> None:
    """Older files stored NumPy's RNG state as a tuple with a uint32 array: allow-listed for that dtype only."""
    model, *_ = _trained_bits()
    legacy_rng = {**capture_rng(), "numpy": np.random.get_state()}
    expected = _draws()
    torch.save({"format": FORMAT, "kind": "spos_supernet", "space": model.space.name,
                "space_config": model.space.config, "affine": False, "model": model.state_dict(), "step": 1,
                "rng": legacy_rng}, tmp_path / "old.pth")
    _, ckpt = load_supernet(tmp_path / "old.pth")
    restore_rng(ckpt["rng"])
    assert _draws() == expected
    # the allow-list does not reach arrays of other dtypes (object arrays least of all)
    for arr in (np.array([1.5]), np.array([1, "x"], dtype=object)):
        torch.save({"format": FORMAT, "a": arr}, tmp_path / "arr.pth")
        with pytest.raises(NniExtError, match="safely"):
            read_checkpoint(tmp_path / "arr.pth")


def test_writers_refuse_what_could_not_be_read_back(tmp_path: Path) -> None:
    model, *_ = _trained_bits()
    for bad, kind in ((np.float64(1.0), "numpy.float64"), (Path("x"), "PosixPath"), (Payload(tmp_path, "touch"),
                                                                                     "Payload")):
        with pytest.raises(TypeError, match=kind):
            save_checkpoint(tmp_path / "c.pth", model=model, space=model.space, kind="spos_supernet",
                            args={"run": {"x": bad}})
    assert not (tmp_path / "c.pth").exists()
    check_plain({"a": [1, 2.0, "s", None, True, (3, 4)], "t": torch.zeros(1), "d": torch.float32}, "state")
    with pytest.raises(TypeError, match=r"state\['a'\]\[1\]"):
        check_plain({"a": [1, np.int64(2)]}, "state")


def test_epoch_state_file_round_trips(tmp_path: Path) -> None:
    model, opt, sched, _ = _trained_bits()
    gen = torch.Generator().manual_seed(7)
    fingerprint = {"lr": 0.1, "arch_betas": [0.5, 0.999]}
    state = EpochStateFile(tmp_path / "s.pt", fingerprint=fingerprint, what="search")
    state.save(1, [{"epoch": 1, "loss": 0.5}], {"model": model, "optimizer": opt, "scheduler": sched}, {"gen": gen})
    torch.load(tmp_path / "s.pt", weights_only=True)
    expected, gen_next = _draws(), torch.rand(2, generator=gen).tolist()
    torch.manual_seed(123)
    fresh, fresh_opt, fresh_sched, _ = _trained_bits()
    fresh_gen = torch.Generator()
    epoch, history = state.load({"model": fresh, "optimizer": fresh_opt, "scheduler": fresh_sched},
                                {"gen": fresh_gen})
    assert (epoch, history) == (1, [{"epoch": 1, "loss": 0.5}])
    assert _draws() == expected and torch.rand(2, generator=fresh_gen).tolist() == gen_next
    assert fresh_sched.state_dict() == sched.state_dict()
    with pytest.raises(NniExtError, match="other options"):
        EpochStateFile(tmp_path / "s.pt", fingerprint={"lr": 0.2}, what="search").load({}, {})
    with pytest.raises(NniExtError, match="no gen2"):
        state.load({}, {"gen2": torch.Generator()})


def test_predictions_round_trip(tmp_path: Path) -> None:
    labels = torch.tensor([0, 1, 2, 1])
    logits = torch.eye(3)[labels] + 0.1
    for name, flip in (("a", False), ("b", True)):
        folder = tmp_path / name
        preds = {"held_out": {"logits": logits, "labels": labels},
                 "test": {"logits": logits.flip(1) if flip else logits, "labels": labels}}
        torch.save(preds, _pcdarts_folder(folder))  # as `pcdarts train` writes them (tensors only)
    summary = ensemble_trained_models([tmp_path / "a", tmp_path / "b"], weighting="calculate")
    assert summary["model_accuracy"][0] == 1.0 and summary["params"] == 20
    torch.save({"test": {"logits": logits}}, tmp_path / "a" / "predictions.pt")
    with pytest.raises(NniExtError, match="does not hold"):
        ensemble_trained_models([tmp_path / "a"], weighting="equal")
