"""Digits dataset, DALI (CPU) and torchvision loaders, sharding, SPOS preprocessing, subsets, bad input."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nni_ext.data import Preprocessing, build_loader, dali_available, index_split, make_subset
from nni_ext.errors import DataError

from .conftest import run_cli

BACKENDS = ["torchvision", pytest.param("dali", marks=pytest.mark.skipif(not dali_available(), reason="no DALI"))]
PREP = Preprocessing(crop_size=32, resize_size=32)


def _epoch(root: Path, split: str, backend: str, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    loader = build_loader(root, split, batch_size=64, backend=backend, device="cpu", num_workers=1,
                          preprocessing=kw.pop("preprocessing", PREP), **kw)
    batches = list(loader)
    assert len(batches) == len(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_digits_layout(digits_root: Path) -> None:
    train, val = index_split(digits_root, "train"), index_split(digits_root, "val")
    assert train.classes == val.classes == [f"digit_{k}" for k in range(10)]
    assert len(train) + len(val) == 1797
    assert 0.18 < len(val) / 1797 < 0.22
    with Image.open(train.files[0]) as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (32, 32)


def test_val_loaders_agree(digits_root: Path) -> None:
    tv_x, tv_y = _epoch(digits_root, "val", "torchvision")
    assert tv_x.shape == (len(index_split(digits_root, "val")), 3, 32, 32) and tv_x.dtype == torch.float32
    assert tv_y.dtype == torch.int64 and tv_y.tolist() == index_split(digits_root, "val").labels
    if dali_available():
        dali_x, dali_y = _epoch(digits_root, "val", "dali")
        assert dali_y.tolist() == tv_y.tolist()
        assert dali_x.shape == tv_x.shape
        # same decode, layout, channel order and normalisation: pixels agree up to JPEG decoder rounding
        assert (dali_x - tv_x).abs().mean() * 0.226 * 255 < 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_loader_shapes_and_shuffling(digits_root: Path, backend: str) -> None:
    x, y = _epoch(digits_root, "train", backend)
    n = len(index_split(digits_root, "train"))
    assert x.shape == (n // 64 * 64, 3, 32, 32)  # drop_last for training
    assert set(y.tolist()) == set(range(10))
    assert y.tolist() != sorted(y.tolist())


@pytest.mark.parametrize("backend", BACKENDS)
def test_sharded_val_covers_every_image_once(digits_root: Path, backend: str) -> None:
    labels = [_epoch(digits_root, "val", backend, rank=r, world_size=2)[1] for r in range(2)]
    total = index_split(digits_root, "val").labels
    assert sum(len(lab) for lab in labels) == len(total)
    assert sorted(torch.cat(labels).tolist()) == sorted(total)


@pytest.mark.parametrize("backend", BACKENDS)
def test_spos_preprocessing_is_bgr_0_255(digits_root: Path, backend: str) -> None:
    spos_x, _ = _epoch(digits_root, "val", backend, preprocessing=Preprocessing(32, 32, spos=True))
    assert spos_x.min() >= 0 and spos_x.max() > 200 and spos_x.max() <= 255
    path = index_split(digits_root, "val").files[0]
    rgb = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float()
    assert (spos_x[0] - rgb.flip(0)).abs().mean() < 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_unreadable_jpeg_is_named(tmp_path: Path, digits_root: Path, backend: str) -> None:
    root = tmp_path / "ds"
    shutil.copytree(digits_root / "val", root / "val")
    bad = sorted((root / "val" / "digit_3").iterdir())[2]
    bad.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 then garbage")  # a header that crashes DALI 2.4's decoder
    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        _epoch(root, "val", backend)


def test_truncated_jpeg_is_named_by_both_backends(tmp_path: Path, digits_root: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(digits_root / "val", root / "val")
    bad = sorted((root / "val" / "digit_7").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:300])
    for backend in ["torchvision"] + (["dali"] if dali_available() else []):
        with pytest.raises(DataError, match=f"cannot read image {bad}"):
            _epoch(root, "val", backend)


def test_bad_roots_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has no train/ folder"):
        build_loader(tmp_path, "train", backend="torchvision")
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=f"class folder {tmp_path / 'train' / 'cat'} has no images"):
        build_loader(tmp_path, "train", backend="torchvision")


def test_data_cli_errors_are_one_line(tmp_path: Path) -> None:
    proc = run_cli("data", "check", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"nni-ext: error: data root {tmp_path} has no val/ folder; expected "
                                                f"ImageNet layout {tmp_path}/val/<class>/*.JPEG (make a small one "
                                                "with `nni-ext data digits DIR`)"]


def test_subset_takes_first_files_as_links(tmp_path: Path, digits_root: Path) -> None:
    counts = make_subset(digits_root, tmp_path / "sub", per_class=5)
    assert counts == {"subset": 50}
    files = sorted((tmp_path / "sub" / "digit_4").iterdir())
    expected = sorted(os.listdir(digits_root / "train" / "digit_4"))[:5]
    assert [f.name for f in files] == expected
    assert all(f.is_symlink() and f.resolve().parent == (digits_root / "train" / "digit_4").resolve() for f in files)


def test_subset_holdout_splits_train_without_overlap(tmp_path: Path, digits_root: Path) -> None:
    proc = run_cli("data", "subset", str(digits_root), str(tmp_path / "search"), "--per-class", "10", "--holdout",
                   "--mode", "copy")
    assert proc.returncode == 0, proc.stderr
    held, rest = index_split(tmp_path / "search", "val"), index_split(tmp_path / "search", "train")
    assert len(held) == 100
    assert len(held) + len(rest) == len(index_split(digits_root, "train"))
    assert not {Path(f).name for f in held.files} & {Path(f).name for f in rest.files}
    assert not any(Path(f).is_symlink() for f in held.files)
    proc = run_cli("data", "subset", str(digits_root), str(tmp_path / "x"), "--per-class", "1000", "--holdout")
    assert proc.returncode == 2 and "--holdout needs more than --per-class 1000" in proc.stderr
