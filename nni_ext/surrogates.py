"""Accuracy (or any metric) surrogates for surrogate-assisted search, from well-kept libraries.

The models of NSGANetV2 / CNAS, each a thin wrapper with ``fit(X, y)`` / ``predict(X)``:

========  ===================================================================================
name      model
========  ===================================================================================
``rbf``   scipy's ``RBFInterpolator``, cubic kernel with a linear tail (pySOT's ``RBFInterpolant``);
          a linear kernel with a constant tail while there are fewer points than features + 1
``gp``    scikit-learn's Gaussian process: constant × Matérn 5/2 + white noise, ``normalize_y`` (the
          seeds' DACE kriging with a fitted noise term), on at most 300 points (best half + random rest)
``mlp``   scikit-learn's ``MLPRegressor`` (3 × 128 ReLU, Adam, early stopping)
``carts`` scikit-learn's random forest of fully grown trees, no bootstrap, random feature subsets
          (the seeds' hand-rolled E2EPP forest)
``as``    adaptive switching: k-fold cross-validated Kendall τ of every pool model (on at most 300
          points); the winner is ``argmax(mean τ − std τ)``, refitted on all data (NSGANetV2's pool:
          rbf, gp, carts)
========  ===================================================================================

:func:`quality` gives Kendall τ, Spearman ρ and RMSE of predictions against true values; the tuner
scores predictions made *before* the points were evaluated (held out), not training points.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

logger = logging.getLogger(__name__)

SURROGATES = ("rbf", "gp", "mlp", "carts", "as")
#: the adaptive-switching pool (NSGANetV2's; CNAS swaps gp for mlp)
DEFAULT_POOL = ("rbf", "gp", "carts")


class Surrogate(Protocol):
    name: str

    def fit(self, X: np.ndarray, y: np.ndarray) -> Surrogate: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


class RBF:
    """Cubic radial basis functions with a linear tail (constant tail when there are too few points)."""

    name = "rbf"

    def __init__(self, smoothing: float = 1e-8) -> None:
        self.smoothing = smoothing
        self.model: Any = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> RBF:
        from scipy.interpolate import RBFInterpolator

        X, y = np.asarray(X, float), np.asarray(y, float)
        self.shift = float(y.mean())
        if len(X) > X.shape[1] + 1:  # enough points for the linear tail the cubic kernel needs
            try:
                self.model = RBFInterpolator(X, y - self.shift, kernel="cubic", degree=1, smoothing=self.smoothing)
                return self
            except np.linalg.LinAlgError:  # e.g. collinear one-hot columns: fall back below
                pass
        # fewer points than features (+1): the linear kernel with a constant tail is well posed
        self.model = RBFInterpolator(X, y - self.shift, kernel="linear", degree=0, smoothing=max(self.smoothing, 1e-6))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model(np.asarray(X, float)) + self.shift


class GP:
    """Gaussian process regression (at most ``max_points`` of the best training points, for speed)."""

    name = "gp"

    def __init__(self, seed: int = 0, max_points: int = 300) -> None:
        self.seed, self.max_points = seed, max_points
        self.model: Any = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> GP:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        X, y = np.asarray(X, float), np.asarray(y, float)
        if len(X) > self.max_points:  # the O(n^3) fit: keep the best half and a random rest
            order = np.argsort(y)
            best = order[: self.max_points // 2]
            rest = np.random.default_rng(self.seed).choice(order[self.max_points // 2:], self.max_points - len(best),
                                                            replace=False)
            keep = np.concatenate([best, rest])
            X, y = X[keep], y[keep]
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(length_scale=1.0, nu=2.5, length_scale_bounds=(1e-2, 1e3)) \
            + WhiteKernel(1e-3, (1e-8, 1e-1))
        self.model = GaussianProcessRegressor(kernel, normalize_y=True, random_state=self.seed, n_restarts_optimizer=0,
                                              optimizer=_lbfgs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings at a bound are expected on small data
            self.model.fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(np.asarray(X, float))

    def predict_std(self, X: np.ndarray) -> np.ndarray:
        """The posterior standard deviation (the GP's own uncertainty)."""
        return self.model.predict(np.asarray(X, float), return_std=True)[1]


def _lbfgs(objective: Any, initial: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, float]:
    """scikit-learn's default kernel optimiser (L-BFGS-B), capped at 50 iterations: seconds, not minutes."""
    from scipy.optimize import minimize

    result = minimize(objective, initial, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": 50})
    return result.x, float(result.fun)


class MLP:
    """A small multi-layer perceptron on standardised targets."""

    name = "mlp"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.model: Any = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> MLP:
        from sklearn.neural_network import MLPRegressor

        y = np.asarray(y, float)
        self.mu, self.sd = float(y.mean()), float(y.std() or 1.0)
        self.model = MLPRegressor(hidden_layer_sizes=(128, 128, 128), learning_rate_init=1e-3, max_iter=2000,
                                  early_stopping=len(y) >= 20, n_iter_no_change=50, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(np.asarray(X, float), (y - self.mu) / self.sd)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(np.asarray(X, float)) * self.sd + self.mu


class CARTS:
    """A forest of fully grown regression trees on random feature subsets, all rows (no bootstrap)."""

    name = "carts"

    def __init__(self, seed: int = 0, n_trees: int = 100) -> None:
        self.seed, self.n_trees = seed, n_trees
        self.model: Any = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> CARTS:
        from sklearn.ensemble import RandomForestRegressor

        self.model = RandomForestRegressor(self.n_trees, max_features=0.5, bootstrap=False, random_state=self.seed,
                                           n_jobs=1)
        self.model.fit(np.asarray(X, float), np.asarray(y, float))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(np.asarray(X, float))


def make_surrogate(name: str, seed: int = 0, pool: Sequence[str] = DEFAULT_POOL, folds: int = 5) -> Surrogate:
    """A surrogate by name (``rbf``, ``gp``, ``mlp``, ``carts``, ``as``); ``ValueError`` for another name."""
    if name == "rbf":
        return RBF()
    if name == "gp":
        return GP(seed)
    if name == "mlp":
        return MLP(seed)
    if name == "carts":
        return CARTS(seed)
    if name == "as":
        return AdaptiveSwitching(pool, seed=seed, folds=folds)
    raise ValueError(f"surrogate={name!r}; use one of {', '.join(SURROGATES)}")


def quality(predicted: Sequence[float], actual: Sequence[float]) -> dict[str, float]:
    """Kendall τ, Spearman ρ and RMSE of predictions (NaN where there are fewer than 2 points)."""
    from scipy.stats import kendalltau, spearmanr

    p, a = np.asarray(predicted, float), np.asarray(actual, float)
    ok = np.isfinite(p) & np.isfinite(a)
    p, a = p[ok], a[ok]
    if len(p) < 2:
        return {"n": int(len(p)), "tau": math.nan, "rho": math.nan, "rmse": math.nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: NaN correlation
        tau, rho = kendalltau(p, a)[0], spearmanr(p, a)[0]
    return {"n": int(len(p)), "tau": float(tau), "rho": float(rho), "rmse": float(np.sqrt(np.mean((p - a) ** 2)))}


@dataclass
class AdaptiveSwitching:
    """k-fold cross-validated choice among ``pool`` by ``mean τ − std τ``, then a refit on all the data."""

    pool: Sequence[str] = DEFAULT_POOL
    seed: int = 0
    folds: int = 5
    cv_points: int = 300
    name: str = "as"
    winner: str | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    model: Any = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> AdaptiveSwitching:
        from sklearn.model_selection import KFold

        X_all, y_all = np.asarray(X, float), np.asarray(y, float)
        X, y = X_all, y_all
        if len(y) > self.cv_points:  # the choice needs a fair sample, not every point
            keep = np.random.default_rng(self.seed).choice(len(y), self.cv_points, replace=False)
            X, y = X[keep], y[keep]
        folds = min(self.folds, len(y))
        if folds < 2:
            self.winner, self.model = self.pool[0], make_surrogate(self.pool[0], self.seed).fit(X_all, y_all)
            return self
        taus: dict[str, list[float]] = {name: [] for name in self.pool}
        for train, test in KFold(folds, shuffle=True, random_state=self.seed).split(X):
            for name in self.pool:
                try:
                    model = make_surrogate(name, self.seed).fit(X[train], y[train])
                    tau = quality(model.predict(X[test]), y[test])["tau"]
                except (ValueError, np.linalg.LinAlgError) as exc:
                    logger.debug("surrogate %s failed on a fold: %s", name, exc)
                    tau = math.nan
                taus[name].append(tau if math.isfinite(tau) else -1.0)
        self.scores = {n: {"tau_mean": float(np.mean(t)), "tau_std": float(np.std(t))} for n, t in taus.items()}
        self.winner = max(self.pool, key=lambda n: self.scores[n]["tau_mean"] - self.scores[n]["tau_std"])
        self.model = make_surrogate(self.winner, self.seed).fit(X_all, y_all)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X)

    @property
    def has_std(self) -> bool:
        return hasattr(self.model, "predict_std")

    def predict_std(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict_std(X)
