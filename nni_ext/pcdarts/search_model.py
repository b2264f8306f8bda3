"""PC-DARTS search network: partial-channel mixed operations with edge normalisation, and its expected cost."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..cost.counting import count
from .genotypes import Genotype, derive_genotype
from .operations import PRIMITIVES, FactorizedReduce, ReLUConvBN, build_op

__all__ = ["MixedOp", "SearchCell", "SearchNetwork", "channel_shuffle", "normalise_edges", "num_edges"]


def num_edges(steps: int) -> int:
    """Number of edges of a cell with ``steps`` intermediate nodes (node ``i`` has ``i + 2`` inputs); 14 for 4."""
    return steps * (steps + 3) // 2


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: view channels as ``(groups, C // groups)``, transpose, flatten.

    Raises:
        ValueError: if the channel count is not divisible by ``groups``.
    """
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels are not divisible by groups={groups}")
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


def normalise_edges(betas: torch.Tensor, steps: int) -> torch.Tensor:
    """PC-DARTS edge normalisation: softmax of ``betas`` over the incoming edges of each intermediate node.

    Args:
        betas: ``(num_edges(steps),)`` edge logits, ordered node by node (node ``i`` owns ``i + 2`` entries).
        steps: number of intermediate nodes.

    Returns:
        Tensor of the same shape whose slice for every node sums to 1.
    """
    if betas.shape != (num_edges(steps),):
        raise ValueError(f"normalise_edges: betas has shape {tuple(betas.shape)}; expected ({num_edges(steps)},) "
                         f"for steps={steps}")
    parts, start = [], 0
    for node in range(steps):
        parts.append(F.softmax(betas[start:start + node + 2], dim=-1))
        start += node + 2
    return torch.cat(parts)


class MixedOp(nn.Module):
    """Partial-channel mixed operation of PC-DARTS.

    The first ``C // partial_k`` channels go through every candidate operation (weighted sum by the
    operation weights); the other channels bypass them (2x2 max-pooled when ``stride`` is 2). Both parts
    are concatenated and channel-shuffled with ``partial_k`` groups. ``partial_k=1`` is the DARTS mixed op.

    Args:
        C: input and output channels.
        stride: 1, or 2 for edges leaving the inputs of a reduction cell.
        partial_k: the sampling ratio ``K`` of PC-DARTS (1/K of the channels are processed).

    Raises:
        ValueError: if ``C`` is not divisible by ``partial_k``.
    """

    def __init__(self, C: int, stride: int, *, partial_k: int = 4) -> None:
        super().__init__()
        if partial_k < 1:
            raise ValueError(f"MixedOp: partial_k={partial_k} must be >= 1 (1 = plain DARTS)")
        if C % partial_k:
            raise ValueError(f"MixedOp: C={C} is not divisible by partial_k={partial_k}; choose C a multiple of K")
        self.C, self.stride, self.partial_k = C, stride, partial_k
        self.partial_channels = C // partial_k
        self._ops = nn.ModuleList()
        for name in PRIMITIVES:
            op = build_op(name, self.partial_channels, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(self.partial_channels, affine=False))
            self._ops.append(op)
        self.bypass_pool = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else None

    @property
    def ops(self) -> nn.ModuleList:
        """The candidate operations, in the order of :data:`PRIMITIVES`."""
        return self._ops

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Mix the candidate operations on the sampled channels with ``weights`` (shape ``(len(PRIMITIVES),)``)."""
        head, rest = x[:, :self.partial_channels], x[:, self.partial_channels:]
        mixed = sum(w * op(head) for w, op in zip(weights, self._ops))
        if self.partial_k == 1:
            return mixed
        if self.bypass_pool is not None:
            rest = self.bypass_pool(rest)
        return channel_shuffle(torch.cat([mixed, rest], dim=1), self.partial_k)


class SearchCell(nn.Module):
    """A normal or reduction cell of the search network: ``steps`` nodes, each fed by all earlier states.

    Args:
        C_prev_prev: channels of the cell's first input (output of the cell before the previous one).
        C_prev: channels of the cell's second input (output of the previous cell).
        C: channels of every state inside the cell.
        reduction: whether this cell halves the resolution (stride 2 on edges from the two inputs).
        reduction_prev: whether the previous cell did, so the first input must be reduced to match.
        steps: number of intermediate nodes.
        multiplier: number of last states concatenated as the output (``multiplier * C`` channels).
        partial_k: PC-DARTS channel sampling ratio.
    """

    def __init__(self, *, C_prev_prev: int, C_prev: int, C: int, reduction: bool, reduction_prev: bool,
                 steps: int = 4, multiplier: int = 4, partial_k: int = 4) -> None:
        super().__init__()
        self.reduction, self.steps, self.multiplier = reduction, steps, multiplier
        self.preprocess0 = (FactorizedReduce(C_prev_prev, C, affine=False) if reduction_prev
                            else ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self._ops = nn.ModuleList()
        for node in range(steps):
            for j in range(node + 2):
                self._ops.append(MixedOp(C, 2 if reduction and j < 2 else 1, partial_k=partial_k))

    @property
    def edges(self) -> nn.ModuleList:
        """The :class:`MixedOp` of every edge, node by node (node ``i`` owns ``i + 2`` consecutive edges)."""
        return self._ops

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_betas: torch.Tensor) -> torch.Tensor:
        """Run the cell.

        Args:
            s0, s1: the two cell inputs.
            weights: ``(num_edges, len(PRIMITIVES))`` operation weights (softmax of alpha).
            edge_betas: ``(num_edges,)`` normalised edge weights (see :func:`normalise_edges`).
        """
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            s = sum(edge_betas[offset + j] * self._ops[offset + j](h, weights[offset + j])
                    for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self.multiplier:], dim=1)


class SearchNetwork(nn.Module):
    """The PC-DARTS search network (CIFAR layout) with architecture parameters alpha (ops) and beta (edges).

    Args:
        C: channels of the first cells (doubled at each reduction cell).
        num_classes: classifier outputs.
        layers: number of cells; reduction cells at ``layers // 3`` and ``2 * layers // 3``.
        steps: intermediate nodes per cell.
        multiplier: states concatenated as a cell's output.
        stem_multiplier: the stem convolution outputs ``stem_multiplier * C`` channels.
        partial_k: PC-DARTS channel sampling ratio K (1 = DARTS without partial channels).
        in_channels: image channels.
        input_size: image side length for the FLOPs of :meth:`expected_cost`; None (default) uses the size of
            the images seen by :meth:`forward` (32 before the first forward).

    Raises:
        ValueError: for non-positive sizes or a ``C`` not divisible by ``partial_k``.
    """

    def __init__(self, *, C: int = 16, num_classes: int = 10, layers: int = 8, steps: int = 4, multiplier: int = 4,
                 stem_multiplier: int = 3, partial_k: int = 4, in_channels: int = 3,
                 input_size: int | None = None) -> None:
        super().__init__()
        for name, value in (("C", C), ("num_classes", num_classes), ("layers", layers), ("steps", steps),
                            ("stem_multiplier", stem_multiplier), ("partial_k", partial_k),
                            ("in_channels", in_channels)):
            if value < 1:
                raise ValueError(f"SearchNetwork: {name}={value} must be >= 1")
        if input_size is not None and input_size < 1:
            raise ValueError(f"SearchNetwork: input_size={input_size} must be >= 1, or None to use the forward input")
        if not 1 <= multiplier <= steps:
            raise ValueError(f"SearchNetwork: multiplier={multiplier} must be in 1..steps ({steps})")
        if C % partial_k:
            raise ValueError(f"SearchNetwork: C={C} is not divisible by partial_k={partial_k}; "
                             f"choose C a multiple of K")
        self.C, self.num_classes, self.layers = C, num_classes, layers
        self.steps, self.multiplier, self.partial_k = steps, multiplier, partial_k
        self.input_size = input_size
        self._seen_size: tuple[int, int] | None = None
        self._cost_size: tuple[int, int] | None = None

        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            self.cells.append(SearchCell(C_prev_prev=C_prev_prev, C_prev=C_prev, C=C_curr, reduction=reduction,
                                         reduction_prev=reduction_prev, steps=steps, multiplier=multiplier,
                                         partial_k=partial_k))
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

        shape = (num_edges(steps), len(PRIMITIVES))
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape))
        self.betas_normal = nn.Parameter(1e-3 * torch.randn(shape[0]))
        self.betas_reduce = nn.Parameter(1e-3 * torch.randn(shape[0]))

        # Per-op cost tables (layers, num_edges, len(PRIMITIVES)), counted by cost_tables() when first needed.
        self.register_buffer("op_params", None, persistent=False)
        self.register_buffer("op_flops", None, persistent=False)
        self.register_buffer("reduction_mask", torch.tensor([c.reduction for c in self.cells]), persistent=False)

    # ----------------------------------------------------------------------------------------- parameters
    def arch_parameters(self) -> list[nn.Parameter]:
        """``[alphas_normal, alphas_reduce, betas_normal, betas_reduce]`` (for the architecture optimiser)."""
        return [self.alphas_normal, self.alphas_reduce, self.betas_normal, self.betas_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        """All parameters except the architecture parameters (for the weight optimiser)."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def node_edge_normalisation(self, betas: torch.Tensor) -> torch.Tensor:
        """Softmax of ``betas`` (shape ``(14,)``) over each node's incoming edges; every node's slice sums to 1."""
        return normalise_edges(betas, self.steps)

    def edge_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-edge operation weights ``softmax(alpha) * normalised beta``, shape ``(14, 8)``, normal and reduce.

        These are the weights the genotype is derived from (PC-DARTS).
        """
        normal = F.softmax(self.alphas_normal, dim=-1) * self.node_edge_normalisation(self.betas_normal)[:, None]
        reduce = F.softmax(self.alphas_reduce, dim=-1) * self.node_edge_normalisation(self.betas_reduce)[:, None]
        return normal, reduce

    def genotype(self) -> Genotype:
        """The discrete architecture: top-2 edges per node and their best non-``none`` operation."""
        with torch.no_grad():
            normal, reduce = self.edge_weights()
        return derive_genotype(normal.cpu().numpy(), reduce.cpu().numpy(), steps=self.steps,
                               multiplier=self.multiplier)

    # ----------------------------------------------------------------------------------------- cost
    def _cost_resolution(self) -> tuple[int, int]:
        if self.input_size is not None:
            return (self.input_size, self.input_size)
        return self._seen_size if self._seen_size is not None else (32, 32)

    def cost_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters and MACs of every candidate op of every edge, shape ``(layers, num_edges, len(PRIMITIVES))``.

        Counted with :func:`nni_ext.cost.counting.count` on zero inputs of the edge's partial width
        ``C // partial_k`` and input resolution, and cached in the buffers ``op_params``/``op_flops``; recounted
        only when the resolution changes. Ops of the same width, stride and resolution cost the same, so each
        such kind is counted once. The resolution is ``input_size`` if given, else that of the last
        :meth:`forward` input, else 32x32.
        """
        size = self._cost_resolution()
        if self.op_params is not None and self.op_flops is not None and self._cost_size == size:
            return self.op_params, self.op_flops
        device = self.alphas_normal.device
        cache: dict[tuple[int, int, int, int], tuple[list[int], list[int]]] = {}
        params = torch.zeros(self.layers, num_edges(self.steps), len(PRIMITIVES))
        flops = torch.zeros_like(params)
        h, w = size
        for i, cell in enumerate(self.cells):
            reduced = (-(-h // 2), -(-w // 2))
            offset = 0
            for node in range(cell.steps):
                for j in range(node + 2):
                    edge: MixedOp = cell.edges[offset]
                    res = (h, w) if j < 2 or not cell.reduction else reduced
                    key = (edge.partial_channels, edge.stride, *res)
                    if key not in cache:
                        dummy = torch.zeros(1, edge.partial_channels, *res, device=device)
                        costs = [count(op, inputs=dummy) for op in edge.ops]
                        cache[key] = ([c.params for c in costs], [c.flops for c in costs])
                    params[i, offset] = torch.tensor(cache[key][0], dtype=torch.float32)
                    flops[i, offset] = torch.tensor(cache[key][1], dtype=torch.float32)
                    offset += 1
            if cell.reduction:
                h, w = reduced
        self.op_params, self.op_flops = params.to(device), flops.to(device)
        self._cost_size = size
        return self.op_params, self.op_flops

    def expected_cost(self, kind: str = "params") -> torch.Tensor:
        """Differentiable expected cost of the cells' candidate operations under the current architecture weights.

        ``sum over cells, edges and ops of normalised-beta * softmax(alpha) * cost(op)``, where ``cost`` is the
        operation's parameter count (``kind="params"``) or its multiply-accumulates at the edge's input
        resolution (``kind="flops"``, see :meth:`cost_tables` for the resolution), at the partial width
        ``C // partial_k`` the search network actually runs. The stem, cell preprocessing, channel bypass and
        classifier do not depend on the architecture and are not included. Gradients flow to alphas and betas.

        Args:
            kind: ``"params"`` or ``"flops"``.

        Returns:
            A scalar tensor in raw units: a number of parameters, or of MACs ("FLOPs" in NAS papers);
            divide by 1e6 for millions.

        Raises:
            ValueError: for another ``kind``.
        """
        if kind not in ("params", "flops"):
            raise ValueError(f"expected_cost: kind={kind!r} is not supported; use 'params' or 'flops'")
        params, flops = self.cost_tables()
        table = params if kind == "params" else flops
        normal, reduce = self.edge_weights()
        weights = torch.where(self.reduction_mask[:, None, None], reduce.unsqueeze(0), normal.unsqueeze(0))
        return (weights * table).sum()

    # ----------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of images ``(N, in_channels, H, W)``."""
        self._seen_size = (int(x.shape[-2]), int(x.shape[-1]))
        w_normal = F.softmax(self.alphas_normal, dim=-1)
        w_reduce = F.softmax(self.alphas_reduce, dim=-1)
        b_normal = self.node_edge_normalisation(self.betas_normal)
        b_reduce = self.node_edge_normalisation(self.betas_reduce)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            if cell.reduction:
                s0, s1 = s1, cell(s0, s1, w_reduce, b_reduce)
            else:
                s0, s1 = s1, cell(s0, s1, w_normal, b_normal)
        return self.classifier(self.global_pooling(s1).flatten(1))
