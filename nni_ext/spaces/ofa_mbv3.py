"""Once-for-All MobileNetV3 (width 1.2) space: NNI labels, OFA dicts, integer matrices, sub-networks and costs.

The supernet of OFA, OFA² and OFA³: a stem (3x3 conv + one fixed 3x3 block), five units of
up to four elastic inverted-residual blocks (kernel size 3/5/7 and expand ratio 3/4/6 per
block, depth 2/3/4 per unit: blocks past the depth are skipped), and a fixed head. Three
encodings of one architecture, converted both ways:

* NNI labels ``ks_0`` … ``ks_19``, ``e_0`` … ``e_19``, ``d_0`` … ``d_4``, ``r`` (the dict a trial gets);
* OFA's dict ``{"ks": [20], "e": [20], "d": [5], "r": [1]}`` (:func:`to_ofa`, :func:`from_ofa`);
* a row of an integer matrix, one column per label in :attr:`OfaMbv3Space.labels` order,
  holding the *index* of the value among the label's candidates (:meth:`OfaMbv3Space.to_matrix`);
  the population format of :mod:`nni_ext.ofa2`.

Canonical form: a skipped block (index >= depth in its unit) has no effect on the network, so
:meth:`OfaMbv3Space.canonicalize` sets its kernel size and expand ratio to the smallest
candidates (3 and 3) so that such architectures de-duplicate.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ArchitectureError
from .base import Architecture, SearchSpace
from .registry import register_space

KERNEL_SIZES: tuple[int, ...] = (3, 5, 7)
EXPAND_RATIOS: tuple[int, ...] = (3, 4, 6)
DEPTHS: tuple[int, ...] = (2, 3, 4)
RESOLUTIONS: tuple[int, ...] = (160, 176, 192, 208, 224)
N_UNITS, MAX_DEPTH = 5, 4
N_BLOCKS = N_UNITS * MAX_DEPTH
WIDTH_MULT = 1.2
#: per unit: output channels (w1.2), stride of its first block, squeeze-excite, h-swish (OFA MobileNetV3)
UNIT_WIDTHS: tuple[int, ...] = (32, 48, 96, 136, 192)
UNIT_STRIDES: tuple[int, ...] = (2, 2, 2, 1, 2)
UNIT_SE: tuple[bool, ...] = (False, True, False, True, True)
UNIT_HSWISH: tuple[bool, ...] = (False, False, True, True, True)
STEM_WIDTH, FINAL_EXPAND_WIDTH, LAST_WIDTH = 24, 1152, 1536
#: the layers every sub-network has, one cost unit (and one OFA latency-table key) each
FIXED_UNITS: tuple[str, ...] = ("first_conv", "first_block", "final_expand", "avgpool", "feature_mix", "classifier")

KS_LABELS = [f"ks_{i}" for i in range(N_BLOCKS)]
E_LABELS = [f"e_{i}" for i in range(N_BLOCKS)]
D_LABELS = [f"d_{u}" for u in range(N_UNITS)]
LABELS = [*KS_LABELS, *E_LABELS, *D_LABELS, "r"]
#: column slices of the integer matrix
KS_COLS, E_COLS, D_COLS, R_COL = slice(0, 20), slice(20, 40), slice(40, 45), 45


def build_supernet(*, num_classes: int = 1000, dropout: float = 0.1) -> nn.Module:
    """A randomly initialised OFA MobileNetV3 w1.2 supernet (ks 3/5/7, e 3/4/6, d 2/3/4) on the CPU.

    Load a checkpoint into it with ``supernet.load_state_dict(torch.load(path, map_location="cpu")["state_dict"])``.
    """
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    return OFAMobileNetV3(n_classes=num_classes, dropout_rate=dropout, width_mult=WIDTH_MULT,
                          ks_list=list(KERNEL_SIZES), expand_ratio_list=list(EXPAND_RATIOS), depth_list=list(DEPTHS))


def subnet(supernet: nn.Module, ofa: Mapping[str, Sequence[int]], *, preserve_weight: bool = True) -> nn.Module:
    """The standalone sub-network of ``supernet`` for an OFA dict (weights copied when ``preserve_weight``)."""
    supernet.set_active_subnet(ks=list(ofa["ks"]), e=list(ofa["e"]), d=list(ofa["d"]))
    return supernet.get_active_subnet(preserve_weight=preserve_weight)


def active_mask(depths: np.ndarray) -> np.ndarray:
    """``(n, 20)`` bool: which blocks run, for ``(n, 5)`` depth *values*."""
    position = np.arange(N_BLOCKS) % MAX_DEPTH
    return position[None, :] < np.repeat(np.asarray(depths), MAX_DEPTH, axis=1)


def to_ofa(arch: Mapping[str, Any]) -> dict[str, list[int]]:
    """NNI labels -> OFA's ``{"ks": [20], "e": [20], "d": [5], "r": [1]}`` (no validation; see the space)."""
    return {"ks": [int(arch[k]) for k in KS_LABELS], "e": [int(arch[k]) for k in E_LABELS],
            "d": [int(arch[k]) for k in D_LABELS], "r": [int(arch["r"])]}


def from_ofa(ofa: Mapping[str, Any], space: OfaMbv3Space | None = None) -> Architecture:
    """OFA dict -> NNI labels, validated against ``space`` (default: the standard space)."""
    space = space or OfaMbv3Space()
    if not isinstance(ofa, Mapping):
        raise ArchitectureError(f"an OFA architecture must be a dict with ks, e, d, r; got {type(ofa).__name__}")
    lengths = {"ks": N_BLOCKS, "e": N_BLOCKS, "d": N_UNITS, "r": 1}
    values: dict[str, list[Any]] = {}
    for field, length in lengths.items():
        value = ofa.get(field)
        if field == "r" and isinstance(value, int):
            value = [value]
        if not isinstance(value, (list, tuple)) or len(value) != length:
            raise ArchitectureError(f"OFA field {field!r} must be a list of {length} integers, got {value!r}")
        values[field] = list(value)
    unknown = sorted(set(ofa) - set(lengths))
    if unknown:
        raise ArchitectureError(f"unknown OFA field {unknown[0]!r}; the fields are ks, e, d, r")
    arch = {**dict(zip(KS_LABELS, values["ks"])), **dict(zip(E_LABELS, values["e"])),
            **dict(zip(D_LABELS, values["d"])), "r": values["r"][0]}
    return space.validate(arch)


class PolynomialActivation(nn.Module):
    """CNAS's functional-constraint activation ``0.01·x² + 0.5·x`` (``OurReLU``), e.g. for homomorphic encryption."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.01 * x * x + 0.5 * x


def backbone_values(arch: Mapping[str, Any]) -> dict[str, int]:
    """The OFA labels of a validated ``arch`` as given (NNI's ``{"_value": v}`` unwrapped), not canonicalised."""
    return {label: int(arch[label]["_value"] if isinstance(arch[label], dict) else arch[label]) for label in LABELS}


def polynomial_activations(model: nn.Module) -> nn.Module:
    """Swap every ``nn.ReLU`` and ``nn.ReLU6`` of ``model`` for :class:`PolynomialActivation`, in place; returns it.

    As CNAS's ``--func_constr``, only the ReLUs are swapped: OFA MobileNetV3's h-swish and the h-sigmoid
    of its squeeze-excite blocks are kept (the ReLU inside squeeze-excite is swapped).
    """
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.ReLU, nn.ReLU6)):
            setattr(model, name, PolynomialActivation())
        else:
            polynomial_activations(child)
    return model


class _GlobalAvgPool(nn.Module):
    """Global average pooling keeping the spatial dimensions (OFA's head pooling, a cost unit of its own)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class _Flatten(nn.Module):
    """OFA's inline ``x.view(x.size(0), -1)`` before the classifier (not an ``nn.Flatten``, which cost counting
    treats as a layer: the sub-network has none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


@register_space("ofa-mbv3")
class OfaMbv3Space(SearchSpace):
    """OFA MobileNetV3 w1.2: labels ``ks_0..19`` (3/5/7), ``e_0..19`` (3/4/6), ``d_0..4`` (2/3/4), ``r``.

    ``validate`` checks every label but keeps the given values of skipped blocks, so NNI's
    parameters round-trip; call :meth:`canonicalize` (or compare :meth:`to_matrix` rows) to
    de-duplicate.

    Example:
        >>> space = OfaMbv3Space()
        >>> arch = space.largest()
        >>> to_ofa(arch)["d"], space.latency_keys(arch, 224)[0]
        ([4, 4, 4, 4, 4], 'Conv-input:224x224x3-output:112x112x24')
    """

    name = "ofa-mbv3"
    default_input_size = 224

    def __init__(self, *, num_classes: int = 1000, resolutions: Sequence[int] = RESOLUTIONS,
                 dropout: float = 0.1) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r} must be a positive integer (1000 for ImageNet)")
        res = list(resolutions) if isinstance(resolutions, (list, tuple)) else None
        if not res or any(not isinstance(r, int) or r < 32 for r in res) or len(set(res)) != len(res):
            raise ValueError(f"resolutions={resolutions!r} must be a list of distinct integers >= 32, "
                             "e.g. [160, 176, 192, 208, 224]")
        super().__init__(num_classes=num_classes, resolutions=sorted(res), dropout=dropout)
        self.resolutions: list[int] = sorted(res)
        self.default_input_size = max(self.resolutions)  # type: ignore[misc]
        self._supernet: nn.Module | None = None

    # ----------------------------------------------------------------- choices
    def choices(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {k: list(KERNEL_SIZES) for k in KS_LABELS}
        out.update({k: list(EXPAND_RATIOS) for k in E_LABELS})
        out.update({k: list(DEPTHS) for k in D_LABELS})
        out["r"] = list(self.resolutions)
        return out

    def validate(self, arch: Mapping[str, Any]) -> Architecture:
        super().validate(arch)  # raises on a bad label or value; its result is canonical
        return backbone_values(arch)

    def canonicalize(self, arch: Architecture) -> Architecture:
        """Set kernel size and expand ratio of skipped blocks to 3 and 3 (they do not change the network)."""
        out = dict(arch)
        for i in range(N_BLOCKS):
            if i % MAX_DEPTH >= int(arch[D_LABELS[i // MAX_DEPTH]]):
                out[KS_LABELS[i]], out[E_LABELS[i]] = KERNEL_SIZES[0], EXPAND_RATIOS[0]
        return out

    def input_size_of(self, arch: Mapping[str, Any]) -> int:
        """The input resolution of ``arch`` (its ``r``): what its cost is counted at."""
        value = arch["r"]
        return int(value["_value"] if isinstance(value, dict) else value)

    def largest(self, resolution: int | None = None) -> Architecture:
        """The largest sub-network (ks 7, e 6, d 4) at ``resolution`` (default: the largest one)."""
        return self._uniform(-1, resolution or self.resolutions[-1])

    def smallest(self, resolution: int | None = None) -> Architecture:
        """The smallest sub-network (ks 3, e 3, d 2) at ``resolution`` (default: the smallest one)."""
        return self._uniform(0, resolution or self.resolutions[0])

    def _uniform(self, i: int, resolution: int) -> Architecture:
        arch = {**{k: KERNEL_SIZES[i] for k in KS_LABELS}, **{k: EXPAND_RATIOS[i] for k in E_LABELS},
                **{k: DEPTHS[i] for k in D_LABELS}, "r": resolution}
        return self.validate(arch)

    # ------------------------------------------------------ integer matrices
    def to_matrix(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``(n, labels)`` int64 matrix of candidate indices (columns in label order), canonicalised."""
        choices = self.choices()
        lookup = {label: {v: i for i, v in enumerate(values)} for label, values in choices.items()}
        rows = [[lookup[label][value] for label, value in self.canonicalize(self.validate(a)).items()] for a in archs]
        return np.asarray(rows, dtype=np.int64).reshape(-1, len(choices))

    def from_matrix(self, matrix: np.ndarray) -> list[Architecture]:
        """Architectures (NNI dicts) of the rows of an index matrix."""
        values = self.matrix_values(matrix)
        return [dict(zip(LABELS, map(int, row))) for row in values]

    def matrix_values(self, matrix: np.ndarray) -> np.ndarray:
        """Replace candidate indices by values (ks, e, d, r), checking the ranges."""
        X = np.asarray(matrix)
        if X.ndim != 2 or X.shape[1] != len(LABELS):
            raise ValueError(f"an {self.name} population matrix has shape (n, {len(LABELS)}); got {X.shape}")
        upper = self.upper_bounds()
        if (X < 0).any() or (X > upper).any():
            raise ValueError(f"population matrix holds an index outside 0..{upper.tolist()}")
        out = np.empty_like(X, dtype=np.int64)
        out[:, KS_COLS] = np.asarray(KERNEL_SIZES)[X[:, KS_COLS]]
        out[:, E_COLS] = np.asarray(EXPAND_RATIOS)[X[:, E_COLS]]
        out[:, D_COLS] = np.asarray(DEPTHS)[X[:, D_COLS]]
        out[:, R_COL] = np.asarray(self.resolutions)[X[:, R_COL]]
        return out

    def upper_bounds(self) -> np.ndarray:
        """Largest index of every matrix column."""
        return np.array([len(v) - 1 for v in self.choices().values()], dtype=np.int64)

    def canonicalize_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`canonicalize` of an index matrix (a new array)."""
        X = np.array(matrix, dtype=np.int64, copy=True)
        skipped = ~active_mask(np.asarray(DEPTHS)[X[:, D_COLS]])
        X[:, KS_COLS] = np.where(skipped, 0, X[:, KS_COLS])
        X[:, E_COLS] = np.where(skipped, 0, X[:, E_COLS])
        return X

    # ------------------------------------------------------------ the network
    def supernet(self) -> nn.Module:
        """This space's supernet (built once, randomly initialised, shared by :meth:`build` and cost units)."""
        if self._supernet is None:
            self._supernet = build_supernet(num_classes=self.config["num_classes"], dropout=self.config["dropout"])
        return self._supernet

    def build(self, arch: Mapping[str, Any], *, supernet: nn.Module | None = None,
              poly_activation: bool = False) -> nn.Module:
        """The standalone sub-network of ``arch``, weights inherited from ``supernet`` (default: this space's).

        ``poly_activation``: CNAS's functional constraint, every ReLU swapped (:func:`polynomial_activations`).
        """
        net = subnet(supernet if supernet is not None else self.supernet(), to_ofa(self.validate(arch)))
        return polynomial_activations(net) if poly_activation else net

    # ------------------------------------------------------- layer structure
    @staticmethod
    def _block_io(block: int) -> tuple[int, int, int]:
        """``(in_channels, out_channels, stride)`` of elastic block ``block`` (0..19)."""
        unit, pos = divmod(block, MAX_DEPTH)
        cin = (STEM_WIDTH if unit == 0 else UNIT_WIDTHS[unit - 1]) if pos == 0 else UNIT_WIDTHS[unit]
        return cin, UNIT_WIDTHS[unit], UNIT_STRIDES[unit] if pos == 0 else 1

    @staticmethod
    def feature_sizes(input_size: int) -> list[int]:
        """Feature-map side at the input of every elastic block, then at the head's input."""
        size = (input_size + 1) // 2  # the 3x3 stride-2 stem
        sizes = []
        for block in range(N_BLOCKS):
            sizes.append(size)
            size = (size - 1) // OfaMbv3Space._block_io(block)[2] + 1
        return [*sizes, size]

    @staticmethod
    def block_unit(block: int, ks: int, e: int) -> str:
        """Cost-unit name of elastic block ``block`` with kernel ``ks`` and expand ratio ``e``."""
        unit, pos = divmod(block, MAX_DEPTH)
        return f"unit{unit}.{'first' if pos == 0 else 'rest'}.k{ks}e{e}"

    def block_latency_key(self, block: int, ks: int, e: int, input_size: int) -> str:
        """OFA latency-table key of one elastic block at ``input_size``."""
        from ..cost import ofa_layer_key

        size = self.feature_sizes(input_size)[block]
        cin, cout, stride = self._block_io(block)
        out = (size - 1) // stride + 1
        unit = block // MAX_DEPTH
        return ofa_layer_key("expanded_conv", (size, size, cin), (out, out, cout), expand=round(cin * e), kernel=ks,
                             stride=stride, idskip=int(block % MAX_DEPTH != 0), se=int(UNIT_SE[unit]),
                             hs=int(UNIT_HSWISH[unit]))

    def fixed_latency_keys(self, input_size: int) -> dict[str, str]:
        """``cost unit -> OFA latency-table key`` of the layers every sub-network has, in network order."""
        from ..cost import ofa_layer_key

        s, f = (input_size + 1) // 2, self.feature_sizes(input_size)[-1]
        keys = [ofa_layer_key("Conv", (input_size, input_size, 3), (s, s, STEM_WIDTH)),
                ofa_layer_key("expanded_conv", (s, s, STEM_WIDTH), (s, s, STEM_WIDTH), expand=STEM_WIDTH, kernel=3,
                              stride=1, idskip=1),
                ofa_layer_key("Conv_1", (f, f, UNIT_WIDTHS[-1]), (f, f, FINAL_EXPAND_WIDTH)),
                ofa_layer_key("AvgPool2D", (f, f, FINAL_EXPAND_WIDTH), (1, 1, FINAL_EXPAND_WIDTH)),
                ofa_layer_key("Conv_2", (1, 1, FINAL_EXPAND_WIDTH), (1, 1, LAST_WIDTH)),
                ofa_layer_key("Logits", (1, 1, LAST_WIDTH), (self.config["num_classes"],))]
        return dict(zip(FIXED_UNITS, keys))

    def _active_blocks(self, arch: Mapping[str, Any]) -> list[tuple[int, int, int]]:
        arch = self.validate(arch)
        return [(i, arch[KS_LABELS[i]], arch[E_LABELS[i]]) for i in range(N_BLOCKS)
                if i % MAX_DEPTH < arch[D_LABELS[i // MAX_DEPTH]]]

    # ------------------------------------------------------------ cost units
    def cost_units(self, arch: Mapping[str, Any], input_size: int) -> list[str]:
        """One unit per layer of OFA's latency tables: the stem layers, the active blocks, the head layers."""
        blocks = [self.block_unit(*b) for b in self._active_blocks(arch)]
        return [*FIXED_UNITS[:2], *blocks, *FIXED_UNITS[2:]]

    def all_cost_units(self, input_size: int) -> list[str]:
        blocks = [b for u in range(N_UNITS) for b in (u * MAX_DEPTH, u * MAX_DEPTH + 1)]
        return [*FIXED_UNITS[:2], *(self.block_unit(b, k, e) for b in blocks for k in KERNEL_SIZES
                                    for e in EXPAND_RATIOS), *FIXED_UNITS[2:]]

    @staticmethod
    def _parse_block_unit(unit: str) -> tuple[int, int, int]:
        """``(block, ks, e)`` of a block cost unit (``block`` is the first or second of its unit)."""
        match = re.fullmatch(r"unit(\d)\.(first|rest)\.k(\d)e(\d)", unit)
        if (not match or int(match.group(1)) >= N_UNITS or int(match.group(3)) not in KERNEL_SIZES
                or int(match.group(4)) not in EXPAND_RATIOS):
            raise KeyError(f"unknown cost unit {unit!r} of space 'ofa-mbv3'")
        block = int(match.group(1)) * MAX_DEPTH + (0 if match.group(2) == "first" else 1)
        return block, int(match.group(3)), int(match.group(4))

    def build_cost_unit(self, unit: str, input_size: int) -> tuple[nn.Module, tuple[int, ...]]:
        net = self.supernet()
        sizes = self.feature_sizes(input_size)
        s, f = (input_size + 1) // 2, sizes[-1]
        fixed: dict[str, tuple[Any, tuple[int, ...]]] = {
            "first_conv": (lambda: net.first_conv, (1, 3, input_size, input_size)),
            "first_block": (lambda: net.blocks[0], (1, STEM_WIDTH, s, s)),
            "final_expand": (lambda: net.final_expand_layer, (1, UNIT_WIDTHS[-1], f, f)),
            "avgpool": (lambda: _GlobalAvgPool(), (1, FINAL_EXPAND_WIDTH, f, f)),
            "feature_mix": (lambda: net.feature_mix_layer, (1, FINAL_EXPAND_WIDTH, 1, 1)),
            "classifier": (lambda: nn.Sequential(_Flatten(), net.classifier), (1, LAST_WIDTH, 1, 1)),
        }
        if unit in fixed:
            make, shape = fixed[unit]
            return copy.deepcopy(make()), shape
        from ofa.utils.layers import ResidualBlock

        block, ks, e = self._parse_block_unit(unit)
        elastic = net.blocks[1 + block]
        elastic.conv.active_kernel_size, elastic.conv.active_expand_ratio = ks, e
        cin = self._block_io(block)[0]
        module = ResidualBlock(elastic.conv.get_active_subnet(cin, preserve_weight=False),
                               copy.deepcopy(elastic.shortcut))
        return module, (1, cin, sizes[block], sizes[block])

    # ------------------------------------------------------- latency keys
    def latency_keys(self, arch: Mapping[str, Any], input_size: int) -> list[str]:
        """OFA's per-layer table keys (e.g. the Note10 tables) of ``arch``'s layers at ``input_size``."""
        fixed = list(self.fixed_latency_keys(input_size).values())
        blocks = [self.block_latency_key(*b, input_size) for b in self._active_blocks(arch)]
        return [*fixed[:2], *blocks, *fixed[2:]]

    def all_latency_keys(self, input_size: int) -> dict[str, str]:
        out = {key: unit for unit, key in self.fixed_latency_keys(input_size).items()}
        for unit in self.all_cost_units(input_size)[2:-4]:
            out[self.block_latency_key(*self._parse_block_unit(unit), input_size)] = unit
        return out


def resolution_slot(resolutions: Sequence[int]) -> np.ndarray:
    """OFA predictor's resolution slot ``(r - 112) // 16`` per resolution (checks r in 112..224, step 16)."""
    res = np.asarray(resolutions)
    bad = [int(r) for r in res if r < 112 or r > 224 or (r - 112) % 16]
    if bad:
        raise ValueError(f"resolution {bad[0]} has no slot in OFA's predictor (128..224 in steps of 16, 8 slots)")
    return (res - 112) // 16

