"""An in-process stand-in for NNI's dispatcher: drives a tuner with ``concurrency`` trials in flight.

It calls the tuner exactly as NNI 3.0's dispatcher does (``update_search_space``, then
``generate_parameters`` / ``receive_trial_result`` / ``trial_end`` per trial) so that tuner logic can be
tested and benchmarked at thousands of trials; finishing order among running trials is random.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from nni import NoMoreTrialError
from nni.tuner import Tuner


def simulate(tuner: Tuner, search_space: Mapping[str, Any], evaluate: Callable[[dict[str, Any]], Any], *,
             n_trials: int, concurrency: int = 1, seed: int = 0) -> list[tuple[dict[str, Any], Any]]:
    """Run ``n_trials`` trials; ``evaluate(params)`` returns the final metric or ``None`` (a failed trial).

    Returns ``(parameters, metric)`` for every trial in the order they ended.
    """
    rng = np.random.default_rng(seed)
    tuner.update_search_space(dict(search_space))
    running: list[tuple[int, dict[str, Any]]] = []
    done: list[tuple[dict[str, Any], Any]] = []
    next_id = 0
    while len(done) < n_trials:
        while len(running) < concurrency and next_id < n_trials:
            try:
                params = tuner.generate_parameters(next_id)
            except NoMoreTrialError:
                n_trials = next_id
                break
            running.append((next_id, params))
            next_id += 1
        if not running:
            break
        pid, params = running.pop(int(rng.integers(len(running))))
        value = evaluate(params)
        if value is not None:
            tuner.receive_trial_result(pid, params, value)
        tuner.trial_end(pid, value is not None)
        done.append((params, value))
    return done
