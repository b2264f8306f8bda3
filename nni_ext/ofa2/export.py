"""After an OFA search: picked sub-networks written as NSGANetV2 writes them, and read back into models.

For each architecture, :func:`export_subnet` writes a folder with

* ``net.subnet``: the OFA dict in NSGANetV2's form, ``{"ks": [...], "e": [...], "d": [5], "r": int}``,
  with the kernel sizes and expand ratios of the *active* blocks only (``sum(d)`` of each);
* ``net.config``: the sub-network's full OFA config (``subnet.config``: every layer, channels, kernels,
  SE/activation, BN settings and the classifier), plus ``"resolution"`` (NSGANetV2's evaluator reads it);
* ``net.inherited``: ``{"state_dict": ...}`` of its weights taken from the supernet, plain tensors saved
  with ``torch.save`` (read with ``weights_only=True``).

:func:`load_exported` builds the model back from ``net.config`` and loads ``net.inherited`` (or another
weights file of the same layout, e.g. ``net.finetuned`` of ``nni-ext ofa finetune``); no supernet is needed.

Architectures are read by :func:`read_architectures` from ``nni-ext select``'s ``pick_NN.json`` files
(or their folder), architecture JSON files of the ``ofa-mbv3`` space (NNI labels, OFA dicts, NSGANetV2's
``net.subnet``) and OFA²'s ``result.json``.

Example:
    >>> from nni_ext.ofa2 import load_supernet
    >>> supernet = load_supernet("runs/ofa2-digits/supernet.pth")  # doctest: +SKIP
    >>> folder = export_subnet(supernet, arch, "runs/export/net-1")  # doctest: +SKIP
    >>> model = load_exported(folder).eval()  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .._io import atomic_write, atomic_write_json
from ..errors import NniExtError

if TYPE_CHECKING:
    from torch import nn

SUBNET_FILE, CONFIG_FILE, WEIGHTS_FILE = "net.subnet", "net.config", "net.inherited"


@dataclass
class Pick:
    """One architecture to export: ``name`` (the folder), NNI labels ``arch``, where it came from."""

    name: str
    arch: dict[str, Any]
    source: str


# ------------------------------------------------------------------------------------------- architectures
def validate_arch(arch: Mapping[str, Any], source: str = "architecture") -> dict[str, Any]:
    """NNI labels of the ``ofa-mbv3`` space checked at their own resolution (any ``r`` >= 32); one-line errors."""
    from ..spaces.ofa_mbv3 import OfaMbv3Space

    raw = arch.get("r") if isinstance(arch, Mapping) else None
    raw = raw.get("_value") if isinstance(raw, Mapping) else raw
    try:
        r = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise NniExtError(f"{source}: not an ofa-mbv3 architecture (no integer resolution 'r'; labels ks_0..ks_19, "
                          "e_0..e_19, d_0..d_4, r, or an OFA dict with ks, e, d, r)") from None
    if r < 32:
        raise NniExtError(f"{source}: resolution r={r} is below 32, the smallest input an OFA MobileNetV3 takes")
    try:
        return OfaMbv3Space(resolutions=[r]).validate(arch)
    except (ValueError, KeyError) as exc:
        raise NniExtError(f"{source}: not an ofa-mbv3 architecture ({str(exc).splitlines()[0]})") from None


def from_subnet(data: Mapping[str, Any], source: str = "OFA dict") -> dict[str, Any]:
    """NNI labels of an OFA dict: 20 ``ks``/``e`` values, or NSGANetV2's active blocks only; ``r`` int or ``[int]``."""
    from ..spaces.ofa_mbv3 import D_LABELS, E_LABELS, KS_LABELS, MAX_DEPTH, N_UNITS

    unknown = sorted(set(data) - {"ks", "e", "d", "r"})
    if unknown:
        raise NniExtError(f"{source}: unknown OFA field {unknown[0]!r}; the fields are ks, e, d, r")
    d, r = data.get("d"), data.get("r")
    r = r[0] if isinstance(r, (list, tuple)) and len(r) == 1 else r
    if not isinstance(d, (list, tuple)) or len(d) != N_UNITS or not all(isinstance(v, int) for v in d):
        raise NniExtError(f"{source}: 'd' must be a list of {N_UNITS} depths (2, 3 or 4), got {d!r}")
    lists = {}
    for field in ("ks", "e"):
        values = data.get(field)
        if not isinstance(values, (list, tuple)) or not all(isinstance(v, int) or v is None for v in values):
            raise NniExtError(f"{source}: {field!r} must be a list of integers, got {values!r}")
        if len(values) == N_UNITS * MAX_DEPTH:
            lists[field] = [3 if v is None else v for v in values]
        elif len(values) == sum(d) and all(0 < depth <= MAX_DEPTH for depth in d):  # NSGANetV2: active blocks only
            it = iter(values)
            lists[field] = [next(it) if pos < depth else 3 for depth in d for pos in range(MAX_DEPTH)]
        else:
            raise NniExtError(f"{source}: {field!r} holds {len(values)} values; give {N_UNITS * MAX_DEPTH} (one per "
                              f"block) or sum(d) = {sum(d)} (the active blocks, as NSGANetV2 writes them)")
    arch = {**dict(zip(KS_LABELS, lists["ks"])), **dict(zip(E_LABELS, lists["e"])), **dict(zip(D_LABELS, d)),
            "r": r}
    return validate_arch(arch, source)


def to_subnet(arch: Mapping[str, Any]) -> dict[str, Any]:
    """NSGANetV2's ``net.subnet`` dict of NNI labels: ks/e of the active blocks only, ``d``, ``r`` as an int."""
    from ..spaces.ofa_mbv3 import D_LABELS, E_LABELS, KS_LABELS, MAX_DEPTH, N_BLOCKS

    d = [int(arch[k]) for k in D_LABELS]
    active = [i for i in range(N_BLOCKS) if i % MAX_DEPTH < d[i // MAX_DEPTH]]
    return {"ks": [int(arch[KS_LABELS[i]]) for i in active], "e": [int(arch[E_LABELS[i]]) for i in active], "d": d,
            "r": int(arch["r"])}


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise NniExtError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise NniExtError(f"{what} {path} is not valid JSON: {exc}") from None


def arch_from_json(data: Any, source: str) -> dict[str, Any]:
    """NNI labels of one JSON architecture: labels (NNI's ``{"_value"}`` form too), an OFA dict, a pick, a trial."""
    while isinstance(data, Mapping):  # pick_NN.json / exported trial: {"parameters": {...}}; {"arch": ...}, {"nni"}
        inner = next((data[k] for k in ("parameters", "arch", "nni") if isinstance(data.get(k), Mapping)), None)
        if inner is None:
            break
        data = inner
    if not isinstance(data, Mapping):
        raise NniExtError(f"{source}: an architecture must be a JSON object (NNI labels or an OFA dict), "
                          f"got {type(data).__name__}")
    return from_subnet(data, source) if "ks" in data else validate_arch(data, source)


def read_architectures(paths: Sequence[str | os.PathLike]) -> list[Pick]:
    """The architectures of files and folders (see the module doc); names are unique folder names."""
    picks: list[Pick] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(path.glob("pick_*.json")) or ([path / SUBNET_FILE] if (path / SUBNET_FILE).is_file()
                                                        else [])
            if not files:
                raise NniExtError(f"{path} holds no pick_*.json (written by `nni-ext select`) nor {SUBNET_FILE}")
        elif path.is_file():
            files = [path]
        else:
            raise NniExtError(f"architecture file {path} not found")
        for file in files:
            data = _read_json(file, "architecture file")
            stem = file.parent.name if file.name == SUBNET_FILE else file.stem
            if isinstance(data, Mapping) and isinstance(data.get("networks"), list):  # OFA²'s result.json
                for i, net in enumerate(data["networks"]):
                    rank = net.get("rank", i) if isinstance(net, Mapping) else i
                    picks.append(Pick(f"{stem}_{int(rank):03d}", arch_from_json(net, f"{file} network {i}"),
                                      str(file)))
            elif isinstance(data, list):
                picks.extend(Pick(f"{stem}_{i:03d}", arch_from_json(item, f"{file} item {i}"), str(file))
                             for i, item in enumerate(data))
            else:
                picks.append(Pick(stem, arch_from_json(data, str(file)), str(file)))
    return unique_names(picks)


def unique_names(picks: list[Pick]) -> list[Pick]:
    """Append ``-2``, ``-3`` … to repeated names (two ``pick_01.json`` from different selections)."""
    seen: dict[str, int] = {}
    for pick in picks:
        base = pick.name
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            pick.name = f"{base}-{seen[base]}"
    return picks


# ------------------------------------------------------------------------------------------------ export
def export_subnet(supernet: nn.Module, arch: Mapping[str, Any], out_dir: str | os.PathLike, *,
                  subnet_extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``net.subnet``, ``net.config`` and ``net.inherited`` of ``arch`` (NNI labels) into ``out_dir``.

    The sub-network is the supernet's active one with ``preserve_weight=True`` (OFA's
    ``get_active_subnet``): kernels centre-cropped and transformed, expand channels the first ones,
    BN statistics sliced. ``subnet_extra`` adds fields to ``net.subnet`` only (``nni-ext select`` writes
    the exit genes of an ``ofa-mbv3-ee`` architecture there; ``arch`` is then its backbone, whose weights
    the supernet holds, while exit heads are built by the space). Files are written atomically; returns ``out_dir``.
    """
    import torch

    from ..spaces.ofa_mbv3 import subnet as build_subnet
    from ..spaces.ofa_mbv3 import to_ofa

    arch = validate_arch(arch)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NniExtError(f"{out} is an existing file; exports go to a folder")
    model = build_subnet(supernet, to_ofa(arch), preserve_weight=True)
    config = {**model.config, "resolution": int(arch["r"])}
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_write_json(out / SUBNET_FILE, {**to_subnet(arch), **dict(subnet_extra or {})}, indent=None)
    atomic_write_json(out / CONFIG_FILE, config, indent=4)
    atomic_write(out / WEIGHTS_FILE, lambda tmp: torch.save({"state_dict": state}, tmp))
    return out


def export_architectures(supernet_path: str | os.PathLike, picks: Sequence[Pick],
                         out_dir: str | os.PathLike) -> list[Path]:
    """Load the supernet once and export every pick into ``out_dir/<pick.name>/``."""
    from .supernet import load_supernet

    if not picks:
        raise NniExtError("nothing to export: no architecture given")
    supernet = load_supernet(supernet_path)
    return [export_subnet(supernet, pick.arch, Path(out_dir) / pick.name) for pick in picks]


# ------------------------------------------------------------------------------------------------- load
def read_net_config(path: str | os.PathLike) -> dict[str, Any]:
    """A ``net.config`` (OFA MobileNetV3 config JSON); one-line errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise NniExtError(f"network config {path} not found; `nni-ext ofa export` writes {CONFIG_FILE}")
    config = _read_json(path, "network config")
    if not isinstance(config, dict) or config.get("name") != "MobileNetV3" or not isinstance(config.get("blocks"),
                                                                                           list):
        raise NniExtError(f"network config {path} is not an OFA MobileNetV3 config (a JSON object with name "
                          "'MobileNetV3' and its blocks, as `subnet.config` writes it)")
    return config


def build_from_config(config: Mapping[str, Any], source: str = "network config") -> nn.Module:
    """The (randomly initialised) OFA ``MobileNetV3`` of a ``net.config`` dict, on the CPU."""
    import copy

    from ofa.imagenet_classification.networks import MobileNetV3

    try:
        return MobileNetV3.build_from_config(copy.deepcopy(dict(config)))  # OFA pops keys of the layer configs
    except (KeyError, TypeError, ValueError, AttributeError, AssertionError) as exc:
        raise NniExtError(f"{source} does not describe an OFA MobileNetV3 ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'bad layer config'})") from None


def read_weights(path: str | os.PathLike) -> dict[str, Any]:
    """The state dict of a ``net.inherited``-style file (``{"state_dict": ...}`` or a plain state dict), safely."""
    import torch

    from ..trainers.checkpoint import safe_torch_load

    path = Path(path)
    if not path.is_file():
        raise NniExtError(f"weights file {path} not found; `nni-ext ofa export` writes {WEIGHTS_FILE}")
    state = safe_torch_load(path, "weights file")
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NniExtError(f"weights file {path} holds no state dict ({{'state_dict': {{name: tensor}}}})")
    return dict(state)


def config_resolution(config: Mapping[str, Any], config_path: str | os.PathLike | None = None) -> int | None:
    """The input resolution of an exported network: ``config["resolution"]``, else ``r`` of ``net.subnet`` beside it."""
    if isinstance(config.get("resolution"), int):
        return int(config["resolution"])
    if config_path is not None:
        subnet = Path(config_path).with_name(SUBNET_FILE)
        if subnet.is_file():
            r = _read_json(subnet, "subnet file").get("r")
            r = r[0] if isinstance(r, list) and len(r) == 1 else r
            return int(r) if isinstance(r, int) else None
    return None


def load_exported(folder: str | os.PathLike | None = None, *, config: str | os.PathLike | None = None,
                  weights: str | os.PathLike | None = None, device: Any = "cpu") -> nn.Module:
    """The model of an exported folder: built from ``net.config``, weights from ``net.inherited``.

    ``config``/``weights`` name the files directly (relative ones inside ``folder`` when it is given),
    e.g. ``weights="net.finetuned"``. The model is in train mode, as a freshly built module.
    """
    from ..trainers.checkpoint import load_state_checked

    base = Path(folder) if folder is not None else None
    if base is None and (config is None or weights is None):
        raise NniExtError("give the exported folder, or both its net.config and weights file")
    if base is not None and not base.is_dir():
        raise NniExtError(f"exported network folder {base} not found")

    def locate(name: str | os.PathLike | None, default: str) -> Path:
        path = Path(default if name is None else name)
        return base / path if base is not None and not path.is_absolute() else path

    config_path, weights_path = locate(config, CONFIG_FILE), locate(weights, WEIGHTS_FILE)
    model = build_from_config(read_net_config(config_path), f"network config {config_path}")
    load_state_checked(model, read_weights(weights_path), str(weights_path))
    return model.to(device)


__all__ = ["CONFIG_FILE", "SUBNET_FILE", "WEIGHTS_FILE", "Pick", "arch_from_json", "build_from_config",
           "config_resolution", "export_architectures", "export_subnet", "from_subnet", "load_exported",
           "read_architectures", "read_net_config", "read_weights", "to_subnet", "validate_arch"]
