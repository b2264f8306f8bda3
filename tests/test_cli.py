"""The nni-ext command: ss_gen (direct and -t trial mode), cost, and one-line errors for bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nni_ext.cli import main
from nni_ext.cost import count
from nni_ext.spaces import create_space

from .conftest import REPO, run_cli


def test_ss_gen_writes_default_file_name(tmp_path: Path) -> None:
    proc = run_cli("ss_gen", "spos", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = json.loads((tmp_path / "nni_auto_gen_search_space.json").read_text())
    assert written == json.loads((REPO / "search_spaces" / "spos.json").read_text())


def test_ss_gen_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ss_gen", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("spos\t20 labels") for line in lines)
    assert any(line.startswith("ofa-mbv3\t46 labels") for line in lines)


def test_ss_gen_trial_mode_runs_the_trial_in_declare_mode(tmp_path: Path) -> None:
    proc = run_cli("ss_gen", "-t", "python -m nni_ext.trials.cost_trial --space spos", "-o", str(tmp_path / "s.json"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s.json").read_text() == (REPO / "search_spaces" / "spos.json").read_text()
    proc = run_cli("ss_gen", "-t", "python -c pass", "-o", str(tmp_path / "t.json"))
    assert proc.returncode == 2 and "wrote no search space" in proc.stderr
    proc = run_cli("ss_gen", "-t", "no-such-program --x", "-o", str(tmp_path / "t.json"))
    assert proc.returncode == 2 and "cannot run trial command" in proc.stderr


def test_cost_cli_prints_json_equal_to_exact_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = create_space("spos", num_classes=10)
    arch = space.sample(__import__("numpy").random.default_rng(5))
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    assert main(["cost", "spos", "--arch", str(tmp_path / "arch.json"), "--input-size", "64",
                 "--space-arg", "num_classes=10"]) == 0
    out = json.loads(capsys.readouterr().out)
    exact = count(space.build(arch), 64)
    assert (out["flops"], out["params"], out["method"]) == (exact.flops, exact.params, "table")
    assert main(["cost", "spos", "--exact", "--measure-latency", "--device", "cpu", "--repeats", "2",
                 "--input-size", "64"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "exact" and out["latency_ms"] > 0 and out["latency_device"] == "cpu"


def test_standalone_cost_trial_reports_metrics(tmp_path: Path) -> None:
    arch = create_space("spos").official_architecture()
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    proc = run_cli("cost", "build-table", "spos", "-o", str(tmp_path / "table.json"))
    assert proc.returncode == 0 and json.loads((tmp_path / "table.json").read_text())["input_size"] == 224
    import subprocess
    import sys

    from .conftest import venv_env

    out = subprocess.run([sys.executable, "-m", "nni_ext.trials.cost_trial", "--arch", str(tmp_path / "arch.json")],
                         capture_output=True, text=True, env=venv_env())
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)
    assert metrics["flops"] == 322918720 and metrics["default"] == pytest.approx(322.91872)


@pytest.mark.parametrize("args,message", [
    (["cost", "nosuchspace"], "unknown search space 'nosuchspace'; registered spaces: nas-bench-201, ofa-mbv3, "
                              "ofa-mbv3-ee, spos, spos-digits"),
    (["ss_gen", "nosuchspace"], "unknown search space 'nosuchspace'"),
    (["ss_gen"], "give a SPACE"),
    (["cost", "spos", "--arch", "ARCH"], "label 'layer_1' has value \"conv\", which is not a candidate; allowed "
                                         "values: [\"shufflenet_3x3\", \"shufflenet_5x5\", \"shufflenet_7x7\", "
                                         "\"xception_3x3\"]"),
    (["cost", "spos", "--arch", "MISSING"], "architecture is missing label 'layer_2'"),
    (["cost", "spos", "--arch", "/nonexistent.json"], "cannot read architecture file /nonexistent.json"),
    (["cost", "spos", "--latency-table", "/nonexistent.yaml"], "cannot read latency table /nonexistent.yaml"),
    (["data", "subset", "SRC", "DST", "--per-class", "0"], "--per-class 0 must be at least 1"),
    (["cost", "spos", "--space-arg", "oops"], "--space-arg 'oops' must look like KEY=VALUE"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"layer_1": "conv"}))
    (tmp_path / "missing.json").write_text(json.dumps({"layer_1": "xception_3x3"}))
    args = [str(tmp_path / "bad.json") if a == "ARCH" else str(tmp_path / "missing.json") if a == "MISSING"
            else str(tmp_path) if a == "SRC" else str(tmp_path / "dst") if a == "DST" else a for a in args]
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("nni-ext: error: ") and message in lines[0], lines[0]


def _one_error_line(proc) -> str:
    """The single ``nni-ext: error:`` line of a failed command (exit 2, no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("nni-ext: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("args,messages", [
    (["ss_gen", "os:path"], ["'os:path' is a module, not a search space", "give `module:attr` of a SearchSpace"]),
    (["ss_gen", "spos", "-o", "FILE/ss.json"], ["FILE/ss.json: FILE is a file, not a folder",
                                                "give -o/--output as a path inside a folder"]),
    (["ss_gen", "spos", "-o", "DIR"], ["DIR is a directory; give -o/--output as a file path, e.g. "
                                       "DIR/nni_auto_gen_search_space.json"]),
    (["ss_gen", "-t", "python -c pass", "-o", "DIR"], ["DIR is a directory; give -o/--output as a file path"]),
    (["ss_gen", "spos", "--space-arg", "bogus_key=3"], ["search space 'spos' has no argument 'bogus_key'",
                                                        "its arguments are: num_classes, stage_repeats"]),
    (["ss_gen", "spos-digits", "--space-arg", "bogus_key=3"], ["'spos-digits' has no argument 'bogus_key'",
                                                               "num_classes"]),
    (["cost", "spos", "--space-arg", "bogus_key=3"], ["search space 'spos' has no argument 'bogus_key'",
                                                      "its arguments are: num_classes, stage_repeats"]),
    (["cost", "spos", "--input-size", "-5"], ["--input-size -5 must be a positive number of pixels",
                                              "e.g. --input-size 224"]),
    (["cost", "spos", "--input-size", "0"], ["--input-size 0 must be a positive number of pixels"]),
    (["cost", "build-table", "spos", "--input-size", "0"], ["--input-size 0 must be a positive number of pixels"]),
    (["data", "digits", "FILE"], ["FILE is an existing file, not a folder; give DIR as a new or existing folder"]),
    (["data", "digits", "FILE/digits"], ["FILE is a file, not a folder"]),
    (["ss_gen", "-t", "python3 -c 'unterminated"], ["-t/--trial-command \"python3 -c 'unterminated\" cannot be "
                                                    "split into arguments (No closing quotation)",
                                                    "close every quote"]),
])
def test_more_bad_input_gives_one_line_naming_it_and_the_fix(tmp_path: Path, args: list[str],
                                                              messages: list[str]) -> None:
    (tmp_path / "FILE").write_text("a regular file\n")
    (tmp_path / "DIR").mkdir()
    line = _one_error_line(run_cli(*args, cwd=tmp_path))
    for message in messages:
        assert message in line, line
    assert (tmp_path / "FILE").read_text() == "a regular file\n" and not any((tmp_path / "DIR").iterdir())


@pytest.mark.parametrize("backend", ["torchvision", "dali"])
def test_data_check_reads_a_split_smaller_than_one_batch(digits_root: Path, tmp_path: Path, backend: str) -> None:
    import shutil

    from nni_ext.data.dali_loader import dali_available

    if backend == "dali" and not dali_available():
        pytest.skip("NVIDIA DALI is not installed")
    for label in ("digit_0", "digit_1", "digit_2"):  # 9 training images, a batch of 64
        (tmp_path / "tiny" / "train" / label).mkdir(parents=True)
        for image in sorted((digits_root / "val" / label).iterdir())[:3]:
            shutil.copy(image, tmp_path / "tiny" / "train" / label / image.name)
    proc = run_cli("data", "check", str(tmp_path / "tiny"), "--split", "train", "--backend", backend, "--device",
                   "cpu", "--crop-size", "32", "--workers", "1", "--batch-size", "64")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"train: 9 images in 1 batches via {backend}, image shape (3, 32, 32)"), proc.stdout


def test_help_of_every_command_imports_no_torch() -> None:
    """``nni-ext --help`` and each command's ``--help`` answer in a fraction of a second: no torch import."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from nni_ext.cli import build_parser\n"
            "parser = build_parser()\n"
            "for command in ('spos', 'ofa', 'ofa2', 'ofa3', 'pcdarts', 'robustness', 'quickstart', 'cost'):\n"
            "    try:\n"
            "        parser.parse_args([command, '--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'nvidia.dali') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: nni-ext pcdarts" in out.stdout
