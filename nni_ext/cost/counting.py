"""Exact FLOPs (multiply-accumulates), parameter counts and activation memory of any ``nn.Module``.

Built on :class:`torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per
multiply-accumulate of convolutions and matrix products; we report MACs, the convention of
the SPOS, OFA and NSGANetV2 papers ("330M FLOPs") and of torchvision's ``_ops`` metadata.
Element-wise work (BN, activations, pooling, additions) is not counted, as in those papers.

Attention is counted too: while counting, PyTorch's fused "fast path" of ``nn.MultiheadAttention``
and ``nn.TransformerEncoder(Layer)`` (one kernel the counter cannot see into) is switched off, so
the projections and the two attention products run as ordinary matrix products; and fused
``scaled_dot_product_attention`` kernels the counter has no formula for on this PyTorch (the
CPU flash kernel, among others) are counted as ``Q Kᵀ`` plus ``A V``.

Activation memory (CNAS's tiny-device costs), from forward hooks in the same pass, over the modules of
:data:`ACTIVATION_LAYERS` (``Conv1d/2d/3d``, ``Linear``, ``BatchNorm1d/2d/3d``, every ``nn`` pooling layer and
``Flatten``; a module of another type, and work done by plain tensor calls such as ``x.mean(...)``, is not a layer):

* ``activations``: the sum over every call of such a layer of the elements of its output tensor(s), at the
  input given (batch 1 by default) — CNAS's ``get_net_info`` definition.
* ``peak_activation_bytes``: the largest *working set* of one layer call, ``(elements of its tensor inputs +
  elements of its tensor outputs) × bytes_per_element`` (float32: 4), maximised over every call of such a
  layer. It bounds the SRAM a layer-by-layer microcontroller runtime needs for the layer's buffers (weights
  live in flash; skip connections held across layers are not included).

Both are exact and decompose over cost units: ``activations`` as a sum, ``peak_activation_bytes`` as a maximum
(:class:`Cost` ``+`` adds the former and takes the maximum of the latter).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

#: fused attention kernels reached through ``F.scaled_dot_product_attention`` whose first three arguments are
#: query ``(..., L, E)``, key ``(..., S, E)`` and value ``(..., S, Ev)``; counted when torch has no formula
_SDPA_KERNELS = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable",
                 "_scaled_dot_product_attention_math_for_mps", "_scaled_dot_product_flash_attention",
                 "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention")


def _sdpa_flops(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int], *args: Any,
                out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs (2 per multiply-accumulate) of ``softmax(Q Kᵀ) V``: ``Q Kᵀ`` plus ``A V`` (as torch counts them).

    Leading dimensions are those of the query (batch and query heads: grouped-query attention
    broadcasts the key/value heads). Causal masks are not discounted, as in torch's own formula.
    """
    *lead, length, dim = query_shape
    return 2 * math.prod(lead) * length * key_shape[-2] * (dim + value_shape[-1])


def _extra_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas for the fused attention kernels that this torch's flop counter does not know."""
    extra: dict[Any, Callable[..., int]] = {}
    for name in _SDPA_KERNELS:
        op = getattr(torch.ops.aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            extra[op] = _sdpa_flops
    return extra


@contextlib.contextmanager
def attention_fastpath_disabled() -> Iterator[None]:
    """Switch off the fused ``nn.MultiheadAttention``/``nn.TransformerEncoder`` fast path; restored on exit.

    The fast path computes the same attention in one kernel (``aten._native_multi_head_attention``,
    ``aten._transformer_encoder_layer_fwd``) that ``torch.utils.flop_counter`` does not look into.
    """
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):  # torch < 2.1 has no switch
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


#: the layer types whose outputs make ``activations`` and whose calls make ``peak_activation_bytes``
ACTIVATION_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd, nn.modules.pooling._LPPoolNd, nn.Flatten)
#: bytes of one float32 element (the default of ``peak_activation_bytes``)
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Cost:
    """Cost of a network at one input size.

    Attributes:
        flops: multiply-accumulates of one forward pass (MACs, "FLOPs" in NAS papers).
        params: number of parameters.
        activations: output elements of the :data:`ACTIVATION_LAYERS` calls (CNAS), at batch 1.
        peak_activation_bytes: largest (input + output elements) × bytes per element of one such layer call.
    """

    flops: int
    params: int
    activations: int = 0
    peak_activation_bytes: int = 0

    def __add__(self, other: Cost) -> Cost:
        """Costs of two parts of one network: sums, and the larger peak."""
        return Cost(self.flops + other.flops, self.params + other.params, self.activations + other.activations,
                    max(self.peak_activation_bytes, other.peak_activation_bytes))

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def input_shape(input_size: int | Sequence[int]) -> tuple[int, ...]:
    """Normalise ``224`` / ``(224, 224)`` / ``(1, 3, 224, 224)`` to an NCHW shape."""
    if isinstance(input_size, int):
        return (1, 3, input_size, input_size)
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        return (1, 3, *size)
    if len(size) == 3:
        return (1, *size)
    return size


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def _elements(value: Any) -> int:
    """Elements of the tensors in ``value`` (a tensor, or a tuple/list/dict holding tensors)."""
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (tuple, list)):
        return sum(_elements(v) for v in value)
    if isinstance(value, dict):
        return sum(_elements(v) for v in value.values())
    return 0


@contextlib.contextmanager
def activation_hooks(model: nn.Module) -> Iterator[list[tuple[int, int]]]:
    """Forward hooks on every :data:`ACTIVATION_LAYERS` module of ``model``; yields ``[(in, out) elements]``.

    One pair per layer call, appended while the block runs; the hooks are removed on exit.
    """
    calls: list[tuple[int, int]] = []

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        calls.append((_elements(args), _elements(output)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ACTIVATION_LAYERS)]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def count(model: nn.Module, input_size: int | Sequence[int] = (1, 3, 224, 224), *,
          inputs: Any = None, device: str | torch.device | None = None,
          bytes_per_element: int = FLOAT32_BYTES) -> Cost:
    """Count the MACs of one forward pass of ``model``, its parameters and its activation memory.

    Args:
        model: any module; it is run once in eval mode without gradients (BN statistics and
            the train/eval flag are left as they were). Attention counts too: the fused fast
            path of ``nn.MultiheadAttention`` is off while counting, and fused
            ``scaled_dot_product_attention`` kernels count as ``Q Kᵀ`` plus ``A V``.
        input_size: an int (square image, batch 1), ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
        inputs: a tensor or tuple of tensors to feed instead of zeros of ``input_size``.
        device: where to run; defaults to the device of the model's first parameter.
        bytes_per_element: bytes of one activation element for ``peak_activation_bytes`` (float32: 4, int8: 1).

    Example:
        >>> import torchvision
        >>> cost = count(torchvision.models.resnet18(), input_size=224)
        >>> round(cost.flops / 1e9, 2), round(cost.params / 1e6, 2)
        (1.81, 11.69)
    """
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    if inputs is None:
        inputs = (torch.zeros(input_shape(input_size), device=device),)
    elif isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    if isinstance(bytes_per_element, bool) or not isinstance(bytes_per_element, int) or bytes_per_element < 1:
        raise ValueError(f"bytes_per_element={bytes_per_element!r} must be a positive integer (float32: 4)")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), attention_fastpath_disabled(), activation_hooks(model) as calls, \
                FlopCounterMode(display=False, custom_mapping=_extra_formulas()) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return Cost(flops=int(counter.get_total_flops()) // 2, params=count_params(model),
                activations=sum(out for _, out in calls),
                peak_activation_bytes=max((i + o for i, o in calls), default=0) * bytes_per_element)
