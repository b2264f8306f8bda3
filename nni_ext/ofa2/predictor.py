"""OFA's accuracy predictor: the published 128-d one-hot features, a vectorised MLP, loading and fitting.

The feature layout is the one of ``ofa/tutorial/accuracy_predictor.py`` (``spec2feats``): for
each of the 20 elastic blocks three kernel-size slots (3, 5, 7) then, after all of them, three
expand-ratio slots (3, 4, 6) per block -- both all-zero for skipped blocks -- then 8 resolution
slots, ``(r - 112) // 16``. The MLP is 128 -> 400 -> 400 -> 400 -> 1 with ReLU, state-dict
keys ``0.*``, ``2.*``, ``4.*``, ``6.*``; it predicts top-1 accuracy as a fraction.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import NniExtError
from ..spaces.ofa_mbv3 import (
    D_COLS,
    DEPTHS,
    E_COLS,
    KS_COLS,
    N_BLOCKS,
    R_COL,
    OfaMbv3Space,
    active_mask,
    resolution_slot,
)

N_FEATURES, HIDDEN = 128, 400
EXPECTED_SHAPES: dict[str, tuple[int, ...]] = {
    "0.weight": (HIDDEN, N_FEATURES), "0.bias": (HIDDEN,), "2.weight": (HIDDEN, HIDDEN), "2.bias": (HIDDEN,),
    "4.weight": (HIDDEN, HIDDEN), "4.bias": (HIDDEN,), "6.weight": (1, HIDDEN), "6.bias": (1,)}


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: a 400-wide MLP on ~100 rows only loses from more threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def make_mlp() -> nn.Sequential:
    """The predictor network, 128 -> 400 -> 400 -> 400 -> 1 with ReLU (PyTorch's default initialisation)."""
    return nn.Sequential(nn.Linear(N_FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a predictor state dict and check its keys and shapes (NniExtError naming what is wrong)."""
    path = Path(path)
    if not path.is_file():
        raise NniExtError(f"accuracy predictor {path} not found; give the path of OFA's acc_predictor.pth "
                          "or of a file written by `nni-ext ofa2 fit-predictor`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise NniExtError(f"cannot read accuracy predictor {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise NniExtError(f"accuracy predictor {path} holds a {type(state).__name__}, not a state dict")
    missing = sorted(set(EXPECTED_SHAPES) - set(state))
    if missing:
        raise NniExtError(f"accuracy predictor {path} lacks {missing[0]!r}: expected an MLP 128->400->400->400->1 "
                          f"with keys {sorted(EXPECTED_SHAPES)}, found keys {sorted(state)[:8]}")
    for key, shape in EXPECTED_SHAPES.items():
        found = tuple(state[key].shape)
        if found != shape:
            raise NniExtError(f"accuracy predictor {path}: {key} has shape {list(found)}, expected {list(shape)} "
                              "(an MLP 128->400->400->400->1 over OFA's one-hot features)")
    return {key: state[key].float() for key in EXPECTED_SHAPES}


class AccuracyPredictor:
    """Predicted top-1 accuracy (fraction) of OFA MobileNetV3 sub-networks, a whole population per call.

    Example:
        >>> predictor = AccuracyPredictor.load("../shared/data/ofa/acc_predictor.pth")  # doctest: +SKIP
        >>> space = predictor.space
        >>> predictor.predict(space.to_matrix([space.largest()]))  # doctest: +SKIP
        array([0.84...])
    """

    def __init__(self, model: nn.Module, *, space: OfaMbv3Space | None = None, source: str = "<memory>") -> None:
        self.space = space if space is not None else OfaMbv3Space()
        if not isinstance(self.space, OfaMbv3Space):
            raise ValueError(f"space={self.space!r} must be an OfaMbv3Space (the predictor's feature layout)")
        self.model = model.eval()
        self.source = source
        self._r_slot = resolution_slot(self.space.resolutions)

    @classmethod
    def load(cls, path: str | os.PathLike, *, space: OfaMbv3Space | None = None) -> AccuracyPredictor:
        """Load a state dict (OFA's ``acc_predictor.pth`` or one written by :func:`fit_predictor`)."""
        model = make_mlp()
        model.load_state_dict(load_state_dict(path))
        return cls(model, space=space, source=str(path))

    def features(self, matrix: np.ndarray) -> np.ndarray:
        """``(n, 128)`` float32 one-hot features of an index matrix (see :meth:`OfaMbv3Space.to_matrix`)."""
        X = np.asarray(matrix, dtype=np.int64)
        self.space.matrix_values(X)  # checks the shape and ranges
        n = X.shape[0]
        active = active_mask(np.asarray(DEPTHS)[X[:, D_COLS]])
        rows, blocks = np.nonzero(active)
        out = np.zeros((n, N_FEATURES), dtype=np.float32)
        out[rows, 3 * blocks + X[:, KS_COLS][rows, blocks]] = 1.0
        out[rows, 3 * N_BLOCKS + 3 * blocks + X[:, E_COLS][rows, blocks]] = 1.0
        out[np.arange(n), 6 * N_BLOCKS + self._r_slot[X[:, R_COL]]] = 1.0
        return out

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """``(n,)`` predicted top-1 accuracy (fraction) of the rows of an index matrix: one forward pass."""
        with torch.inference_mode():
            return self.model(torch.from_numpy(self.features(matrix))).numpy()[:, 0].astype(np.float64)

    def predict_archs(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted accuracy of architectures given as NNI dicts."""
        return self.predict(self.space.to_matrix(archs))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state dict (loadable by :meth:`load` and by OFA's tutorial code), atomically."""
        from .._io import atomic_write

        return atomic_write(path, lambda tmp: torch.save(self.state_dict(), tmp))


def fit_predictor(archs: Sequence[Mapping[str, Any]] | np.ndarray, accuracies: Sequence[float] | np.ndarray, *,
                  space: OfaMbv3Space | None = None, seed: int = 0, epochs: int = 200, batch_size: int = 64,
                  lr: float = 1e-3, weight_decay: float = 1e-4, out: str | os.PathLike | None = None,
                  ) -> AccuracyPredictor:
    """Train an MLP of OFA's predictor shape on measured (architecture, accuracy) pairs (CPU, seeded).

    Args:
        archs: NNI architecture dicts, or an index matrix.
        accuracies: top-1 accuracy of each architecture as a fraction in [0, 1].
        seed: seeds the initialisation (without touching torch's global generator) and the batch order.
        out: where to save the state dict (optional).
    """
    space = space if space is not None else OfaMbv3Space()
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs={epochs}, batch_size={batch_size} and lr={lr} must be positive")
    X = np.asarray(archs) if isinstance(archs, np.ndarray) else space.to_matrix(archs)
    y = np.asarray(accuracies, dtype=np.float32).reshape(-1)
    if len(X) != len(y) or len(y) < 2:
        raise NniExtError(f"need at least 2 architectures with one accuracy each; got {len(X)} architectures "
                          f"and {len(y)} accuracies")
    if not np.isfinite(y).all() or (y < 0).any() or (y > 1).any():
        raise NniExtError("accuracies must be fractions in [0, 1] (divide percentages by 100)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_mlp()
    predictor = AccuracyPredictor(model, space=space, source="<fitted>")
    # train on standardised targets, then fold the scale into the last layer (same state-dict layout)
    mean, std = float(y.mean()), float(y.std()) or 1.0
    feats, target = torch.from_numpy(predictor.features(X)), torch.from_numpy((y - mean) / std)[:, None]
    rng = np.random.default_rng(seed)
    model.train()
    with single_thread():
        _train(model, feats, target, rng, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay)
    model.eval()
    with torch.no_grad():
        last = model[-1]
        last.weight.mul_(std)
        last.bias.mul_(std).add_(mean)
    if out is not None:
        predictor.save(out)
    return predictor


def _train(model: nn.Module, feats: torch.Tensor, target: torch.Tensor, rng: np.random.Generator, *, epochs: int,
           batch_size: int, lr: float, weight_decay: float) -> None:
    """Adam + cosine schedule on the mean squared error, mini-batches in ``rng``'s order."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
    n = len(target)
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(n))
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            optimiser.zero_grad()
            loss = nn.functional.mse_loss(model(feats[idx]), target[idx])
            loss.backward()
            optimiser.step()
        scheduler.step()
