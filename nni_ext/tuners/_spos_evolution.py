"""SPOS evolutionary architecture search (Guo et al.; official code, NNI <= 2.8's SPOSEvolution) as NNI tuners.

One evolution (:class:`SposEvolution`) with a cost hook and two thin public tuners: :class:`EvolutionWithFlops`
(FLOPs from the space's lookup table, microseconds per candidate) and :class:`EvolutionWithLatency` (ms from a
per-layer latency table, or measured once per architecture). Nothing over the limit or seen before is dispatched.
"""
from __future__ import annotations

import json
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
from nni import NoMoreTrialError

from .._io import atomic_write_json
from ..core.archive import Record
from ..core.tuner import BaseTuner, check_int, check_number, register_tuner, tuner_output_dir

logger = logging.getLogger(__name__)
Key = tuple  # one value per label, in the space's label order


@dataclass
class _Generation:
    """The architectures handed out for one generation, how many still run, how many were extra random ones."""

    members: list = field(default_factory=list)
    running: int = 0
    extras: int = 0


class SposEvolution(BaseTuner):
    """SPOS evolution under a cost limit; subclasses give the cost (:meth:`_setup_cost`, :meth:`_slow_cost`).

    Generation 0 is ``population_size`` random feasible architectures; each next one has ``num_mutation``
    mutants (each layer resampled with probability ``mutation_prob``) and ``num_crossover`` uniform
    crossovers of the ``topk`` parents, topped up with random ones. Every child is under the limit and
    new to the whole run. Parents are the top-k of everything evaluated (``selection: all``, the official
    elitist search) or of the previous generation first (``selection: generation``, NNI's old behaviour).

    Asynchronous dispatch: candidates of the current generation are handed out from a queue; when it is
    empty while trials of that generation still run, the next generation is bred from the results available
    so far if at least ``topk`` trials succeeded, else an extra random feasible candidate keeps the worker
    busy (at most ``population_size // 2``, taken off the next generation's size, so a run proposes exactly
    ``population_size * num_generations`` architectures: use it as ``maxTrialNumber``). After the last
    generation ``nni.NoMoreTrialError`` stops new trials. A NaN/missing ``default`` metric or a trial
    ending without a result counts as failed.

    Every result goes into the one archive (:mod:`nni_ext.core.archive`) with the objectives ``default``
    (maximised) and the tuner's own exact cost (``flops`` or ``latency_ms``, minimised, from the cost
    model, never from the trial), constrained by the limit. Files (atomic) in ``output_dir`` (default
    ``<experiment dir>/spos``; none without either): the archive's files, ``generation_NNN.json`` once all of
    its trials ended, ``best_architecture.json`` (plain ``{label: value}``) and ``best.json``. ``import_data``
    (``nnictl resume``) rebuilds the archive and the generation counter (from the generation files when
    present, else ``population_size`` results per generation) and first hands out the missing members of an
    interrupted generation.
    """

    cost_metric: ClassVar[str] = "cost"

    def __init__(self, *, limit: float, limit_name: str, space: str = "spos",
                 space_args: Mapping[str, Any] | None = None, input_size: int | None = None,
                 population_size: int = 50, topk: int = 10, mutation_prob: float = 0.1, num_crossover: int = 25,
                 num_mutation: int = 25, num_generations: int = 20, selection: str = "all", max_draws: int = 10000,
                 output_dir: str | None = None, seed: int | None = None) -> None:
        for name, value, low in (("population_size", population_size, 1), ("topk", topk, 1),
                                 ("num_crossover", num_crossover, 0), ("num_mutation", num_mutation, 0),
                                 ("num_generations", num_generations, 1), ("max_draws", max_draws, 1)):
            check_int(name, value, low)
        check_int("input_size", input_size, 1, optional=True)
        if num_mutation + num_crossover > population_size:
            raise ValueError(f"num_mutation + num_crossover = {num_mutation + num_crossover} must be <= "
                             f"population_size={population_size}; lower them or raise population_size")
        check_number("mutation_prob", mutation_prob, 0.0, 1.0)
        if selection not in ("all", "generation"):
            raise ValueError(f"selection={selection!r} is unknown; use 'all' (top-k of everything evaluated, "
                             "official SPOS) or 'generation' (top-k of the previous generation)")
        check_number(limit_name, limit, 0.0, low_open=True)
        if not isinstance(space, str):
            raise ValueError(f"space={space!r} must be the name of a registered nni_ext space, e.g. 'spos'")
        super().__init__(seed=seed, objectives={"default": "maximize", self.cost_metric: "minimize"},
                         constraints={self.cost_metric: f"<= {float(limit)!r}"}, reference_after=population_size,
                         output_dir=tuner_output_dir(output_dir, "spos"))
        self.limit, self.limit_name, self.selection, self.max_draws = float(limit), limit_name, selection, max_draws
        self.population_size, self.topk, self.mutation_prob = population_size, topk, float(mutation_prob)
        self.num_crossover, self.num_mutation, self.num_generations = num_crossover, num_mutation, num_generations
        self.space_name, self._space_args, self._input_size_arg = space, dict(space_args or {}), input_size
        self._prepared = False
        self.queue: deque[Key] = deque()  # candidates of the last generation not handed out yet
        self.gens: list[_Generation] = []  # handed out so far; ``generation`` is the last one's index
        self.generation, self.next_write = -1, 0
        self.best: Record | None = None

    def _prepare(self) -> None:
        """Build the space and its cost model, and check the limit against the cheapest architecture.

        Done when the search space arrives (or first needed), not in the constructor: building a space
        imports torch, which can take longer than the 10 s NNI gives its dispatcher to connect.
        """
        if self._prepared:
            return
        from ..spaces import create_space

        self.nas_space = create_space(self.space_name, **self._space_args)
        self.input_size = int(self._input_size_arg or self.nas_space.default_input_size)
        self.labels, self._choices = self.nas_space.labels, list(self.nas_space.choices().values())
        self._sizes = np.array([len(c) for c in self._choices])
        self._fixed, self._per_label = self._decompose(self._setup_cost())
        self._prepared = True
        if self._per_label is not None:
            minimum = self._fixed + sum(min(t.values()) for t in self._per_label)
            if self.limit < minimum:
                raise ValueError(f"{self.limit_name}={self.limit:.10g} is below the cheapest architecture of space "
                                 f"{self.space_name!r} at {self.input_size}px ({minimum:.10g} {self.cost_metric}); "
                                 f"raise {self.limit_name} to at least {minimum:.10g}")

    @classmethod
    def contract_case(cls, workdir: Any) -> dict[str, Any]:
        """What the tuner contract tests run: the small digits space (a fixed space: only its choices)."""
        from ..spaces import create_space

        return {"class_args": {"space": "spos-digits", "population_size": 6, "topk": 2, "num_mutation": 2,
                               "num_crossover": 2, "num_generations": 4, **cls._contract_limit()},
                "search_space": create_space("spos-digits").to_nni(),
                "report": lambda p, i: {"default": float(i % 7) / 7}}

    @classmethod
    def _contract_limit(cls) -> dict[str, Any]:
        return {}

    def _meta(self) -> dict[str, Any]:
        return {**super()._meta(), "generation": self.generation, "limit": {self.cost_metric: self.limit}}

    def _setup_cost(self) -> dict[str, float] | None:
        """Hook: prepare the cost model; return ``cost unit -> cost`` when the cost is a sum over units."""
        raise NotImplementedError

    def _slow_cost(self, arch: dict[str, Any]) -> float:
        """Hook: the cost of one architecture by the general route (any space)."""
        raise NotImplementedError

    def _decompose(self, unit_costs: dict[str, float] | None) -> tuple[float, list[dict[Any, float]] | None]:
        """``(fixed, per-label costs)`` when the units are fixed ones plus one ``label=value`` per label (SPOS)."""
        if unit_costs is None or any(f"{label}={v}" not in unit_costs for label, c in zip(self.labels, self._choices)
                                     for v in c):
            return 0.0, None
        per_label = [{v: unit_costs[f"{label}={v}"] for v in c} for label, c in zip(self.labels, self._choices)]
        fixed = sum(c for u, c in unit_costs.items() if "=" not in u)
        probe = self.nas_space.sample(np.random.default_rng(0))  # check the decomposition on one architecture
        if not math.isclose(fixed + sum(t[v] for t, v in zip(per_label, probe.values())), self._slow_cost(probe)):
            return 0.0, None
        return fixed, per_label

    def _cost(self, key: Key) -> float:
        if self._per_label is None:
            return self._slow_cost(dict(zip(self.labels, key)))
        return self._fixed + sum(t[v] for t, v in zip(self._per_label, key))

    def _key(self, params: Mapping[str, Any]) -> Key:
        return tuple(params[label] for label in self.labels)

    def _params(self, key: Key) -> dict[str, Any]:
        return dict(zip(self.labels, key))

    def _on_search_space(self) -> None:
        assert self.space is not None
        self._prepare()
        given = {p.name: list(p.args) if p.type == "choice" else None for p in self.space.parameters}
        if given != dict(zip(self.labels, self._choices)):
            raise ValueError(f"the experiment's search space does not match space {self.space_name!r}; "
                             f"export it with `nni-ext ss_gen {self.space_name}`")

    def _take(self, key: Key, out: list[Key]) -> bool:
        """Append ``key`` (canonicalised) to ``out`` when it is new and under the limit."""
        params = self.nas_space.canonicalize(self._params(key))
        if self.archive.seen(params) or self._cost(self._key(params)) > self.limit:
            return False
        self.archive.mark_seen(params)
        out.append(self._key(params))
        return True

    def _draw(self) -> Key:
        return tuple(c[i] for c, i in zip(self._choices, self.rng.integers(self._sizes)))

    def _random(self, n: int) -> list[Key]:
        """Up to ``n`` random feasible unseen architectures (``max_draws`` draws each)."""
        out: list[Key] = []
        while len(out) < n and any(self._take(self._draw(), out) for _ in range(self.max_draws)):
            pass
        return out

    def _ranked(self, previous: int) -> list[Record]:
        """Successful results under the limit, best first (``selection: generation``: ``previous``'s first)."""
        return sorted((r for r in self.archive.finished if r.feasible), key=lambda r: (
            self.selection == "generation" and r.generation != previous, -r.value("default")))

    def _breed(self, size: int, previous: int) -> list[Key]:
        parents, n = [self._key(r.params) for r in self._ranked(previous)[:self.topk]], len(self.labels)

        def mutant() -> Key:
            parent, fresh = parents[int(self.rng.integers(len(parents)))], self._draw()
            return tuple(f if m else v for v, f, m in zip(parent, fresh, self.rng.random(n) < self.mutation_prob))

        def crossover() -> Key:
            i, j = self.rng.choice(len(parents), 2, replace=len(parents) < 2)
            return tuple(a if m else b for a, b, m in zip(parents[i], parents[j], self.rng.random(n) < 0.5))

        children: list[Key] = []
        for make, count in ((mutant, self.num_mutation), (crossover, self.num_crossover)):
            target = min(len(children) + count, size)
            for _ in range(10 * count if parents else 0):  # the official code tries 10x the needed count
                if len(children) >= target:
                    break
                self._take(make(), children)
        return children + self._random(size - len(children))

    @property
    def n_done(self) -> int:
        """Results received (successful or failed)."""
        return len(self.archive.finished)

    @property
    def n_ok(self) -> int:
        """Successful results under the limit."""
        return sum(r.feasible for r in self.archive.finished)

    def _refill(self) -> None:
        if len(self.gens) >= self.num_generations:
            raise NoMoreTrialError(f"all {self.num_generations} generations have been handed out")
        last = self.gens[-1] if self.gens else None
        if last and self.n_ok < self.topk and last.running and last.extras < self.population_size // 2:
            self.queue.extend(self._random(1))  # too few results to breed from: keep the worker busy
            last.extras += len(self.queue)
            if self.queue:
                return
        children = (self._breed(self.population_size - last.extras, self.generation) if last
                    else self._random(self.population_size))
        if not children:
            raise NoMoreTrialError(f"no unseen architecture under {self.limit_name}={self.limit:g} is left")
        self.gens.append(_Generation())
        self.generation = len(self.gens) - 1
        self.queue.extend(children)
        logger.info("SPOS evolution: handing out generation %d of %d (%d candidates, %d successful results so far)",
                    self.generation, self.num_generations, len(children), self.n_ok)

    def _ask(self, parameter_id: int) -> dict[str, Any]:
        self._prepare()
        if not self.queue:
            self._refill()
        key = self.queue.popleft()
        self.gens[-1].running += 1
        self.gens[-1].members.append(key)
        return self.nas_space.validate(self._params(key))

    def _known_metrics(self, params: Mapping[str, Any]) -> dict[str, float]:
        self._prepare()
        return {self.cost_metric: self._cost(self._key(params))}

    def _tell(self, record: Record) -> None:
        self._prepare()
        if not record.dispatched:  # imported, late or customized: tagged with the current generation
            self.archive.set_generation(record, self.generation if self.gens else None)
        if not record.ok:
            logger.warning("SPOS evolution: a trial of generation %s failed: %s", record.generation, record.reason)
        elif record.feasible and (self.best is None or record.value("default") > self.best.value("default")):
            self.best = record
            self._write_best()
        if record.dispatched and record.generation is not None:
            self.gens[record.generation].running -= 1
            while (self.next_write <= self.generation and not self.gens[self.next_write].running
                   and (self.next_write < self.generation or not self.queue)):
                self._write_generation(self.next_write)
                self.next_write += 1

    def _after_import(self, records: list[Record], fresh: bool) -> None:
        """Rebuild the generation counter on a fresh tuner (generation files first)."""
        self._prepare()
        if not fresh or self.generation >= 0:  # imported into a running search: _tell tagged the current generation
            return
        known: dict[Key, int] = {}
        last = -1
        for path in sorted(self.output_dir.glob("generation_*.json")) if self.output_dir else []:
            try:
                info = json.loads(path.read_text())
                for arch in info["members"]:
                    known[self._key(self.nas_space.validate(arch["architecture"]))] = int(info["generation"])
                last = max(last, int(info["generation"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("SPOS evolution: cannot read %s (%s); ignoring it", path, exc)
        for key in known:  # members of written generations whose trials failed are not re-proposed either
            self.archive.mark_seen(self._params(key))
        unknown = 0
        for r in records:  # not in a generation file: population_size per generation after them
            key = self._key(r.params)
            self.archive.set_generation(r, known.get(key, last + 1 + unknown // self.population_size))
            unknown += key not in known
        count = 1 + max([last, *(r.generation for r in records)])  # type: ignore[list-item]
        self.gens = [_Generation([self._key(r.params) for r in records if r.generation == g]) for g in range(count)]
        self.generation, self.next_write = count - 1, count
        missing = self.population_size - len(self.gens[-1].members) if self.generation > last else 0
        if missing > 0:  # finish the interrupted generation instead of skipping its missing members
            self.queue.extend(self._breed(missing, self.generation - 1) if self.generation else self._random(missing))
            self.next_write = self.generation
        logger.info("SPOS evolution: resumed from %d trials at generation %d", len(records), self.generation)

    def _describe(self, r: Record) -> dict[str, Any]:
        accuracy = r.value("default")
        return {"architecture": self._params(self._key(r.params)),
                "accuracy": accuracy if math.isfinite(accuracy) else None,
                self.cost_metric: self._cost(self._key(r.params)), "generation": r.generation}

    def _write_generation(self, g: int) -> None:
        pool = [r for r in self._ranked(g) if r.generation is not None
                and (r.generation <= g if self.selection == "all" else r.generation == g)]
        top = pool[:self.topk]
        failed, best = self.n_done - self.n_ok, self.best
        logger.info("SPOS evolution: generation %d of %d done, %d evaluated (%d failed), %s", g,
                    self.num_generations, self.n_done, failed, "no successful trial yet" if best is None else
                    f"best accuracy {best.value('default'):.6g} at {self.cost_metric} "
                    f"{best.value(self.cost_metric):.6g}")
        if self.output_dir is not None:
            by_key = {self._key(r.params): r for r in self.archive.records}
            atomic_write_json(self.output_dir / f"generation_{g:03d}.json", {
                "generation": g, "num_generations": self.num_generations, "selection": self.selection,
                "limit": {self.cost_metric: self.limit}, "evaluated": self.n_done, "failed": failed,
                "topk": [self._describe(r) for r in top],
                "members": [self._describe(by_key[k]) for k in self.gens[g].members]})

    def _write_best(self) -> None:
        if self.output_dir is not None and self.best is not None:
            atomic_write_json(self.output_dir / "best_architecture.json", self._params(self._key(self.best.params)))
            atomic_write_json(self.output_dir / "best.json", {**self._describe(self.best), "found_after": self.n_done,
                                                              "limit": {self.cost_metric: self.limit}})


@register_tuner("EvolutionWithFlops")
class EvolutionWithFlops(SposEvolution):
    """SPOS evolution under a FLOPs (multiply-accumulates) limit, costed by the space's lookup table.

    Args:
        flops_limit: candidates above it are never dispatched (SPOS: 330e6 at 224px).
        **kwargs: ``space`` ("spos"), ``space_args``, ``input_size``, ``population_size`` (50), ``topk`` (10),
            ``mutation_prob`` (0.1), ``num_crossover`` (25), ``num_mutation`` (25), ``num_generations`` (20),
            ``selection`` (``all`` | ``generation``), ``max_draws`` (10000 random draws per candidate),
            ``output_dir``, ``seed``; see :class:`SposEvolution`.

    YAML::

        tuner:
          name: EvolutionWithFlops       # after `nni-ext register`
          classArgs: {space: spos, flops_limit: 330.0e+6, population_size: 50, topk: 10, seed: 0}
    """

    cost_metric = "flops"

    def __init__(self, *, flops_limit: float = 330e6, **kwargs: Any) -> None:
        super().__init__(limit=flops_limit, limit_name="flops_limit", **kwargs)

    @classmethod
    def _contract_limit(cls) -> dict[str, Any]:
        return {"flops_limit": 470e3}

    def _setup_cost(self) -> dict[str, float]:
        from ..cost import CostTable
        self.cost_table = CostTable.cached(self.nas_space, self.input_size)
        return {unit: float(flops) for unit, (flops, _) in self.cost_table.entries.items()}

    def _slow_cost(self, arch: dict[str, Any]) -> float:
        return float(self.cost_table.cost(arch).flops)


@register_tuner("EvolutionWithLatency")
class EvolutionWithLatency(SposEvolution):
    """SPOS evolution under a latency limit (ms): summed from a per-layer table, or measured and cached.

    Args:
        latency_limit_ms: candidates predicted slower are never dispatched.
        latency_table: per-layer table (``nni-ext cost build-latency-table``); without it every
            candidate is built and timed once on ``measure_device`` (``measure_warmup``/``measure_repeats``).
        **kwargs: as :class:`EvolutionWithFlops`.

    YAML::

        tuner:
          name: EvolutionWithLatency
          classArgs: {space: spos, latency_limit_ms: 20, latency_table: /data/spos_cpu.yaml, seed: 0}
    """

    cost_metric = "latency_ms"

    def __init__(self, *, latency_limit_ms: float, latency_table: str | None = None, measure_device: str = "cpu",
                 measure_warmup: int = 3, measure_repeats: int = 10, **kwargs: Any) -> None:
        check_int("measure_warmup", measure_warmup, 0)
        check_int("measure_repeats", measure_repeats, 1)
        if latency_table is not None and not isinstance(latency_table, str):
            raise ValueError(f"latency_table={latency_table!r} must be the path of a per-layer latency table")
        if not isinstance(measure_device, str):
            raise ValueError(f"measure_device={measure_device!r} must be a device name, e.g. 'cpu' or 'cuda:0'")
        self.latency_table_path, self.measure_device, self._measured = latency_table, measure_device, {}
        self.measure_warmup, self.measure_repeats = measure_warmup, measure_repeats
        super().__init__(limit=latency_limit_ms, limit_name="latency_limit_ms", **kwargs)

    @classmethod
    def contract_case(cls, workdir: Any) -> dict[str, Any]:
        """As the FLOPs tuner's, with a per-layer latency table (fixed made-up figures: a measured latency
        varies from run to run, and the contract compares runs)."""
        from pathlib import Path

        from ..cost import LatencyTable
        from ..spaces import create_space

        space = create_space("spos-digits")
        keys = sorted(set(space.all_latency_keys(space.default_input_size)))
        path = Path(workdir) / "latency.yaml"
        LatencyTable({k: {"mean": 0.01 * (1 + i % 7), "std": 0.0, "count": 1} for i, k in enumerate(keys)}).save(path)
        case = super().contract_case(workdir)
        case["class_args"].update(latency_table=str(path))
        return case

    @classmethod
    def _contract_limit(cls) -> dict[str, Any]:
        return {"latency_limit_ms": 1e6}

    def _setup_cost(self) -> dict[str, float] | None:
        from ..cost import LatencyTable
        self.table = LatencyTable.load(self.latency_table_path) if self.latency_table_path else None
        keys = self.nas_space.all_latency_keys(self.input_size) if self.table is not None else {}
        return {unit: self.table.mean(key) for key, unit in keys.items()} if self.table is not None else None

    def _slow_cost(self, arch: dict[str, Any]) -> float:
        if self.table is not None:
            return self.table.predict(self.nas_space.latency_keys(arch, self.input_size))
        key = tuple(arch.values())
        if key not in self._measured:
            from ..cost import measure_latency
            self._measured[key] = measure_latency(self.nas_space.build(arch), self.input_size,
                                                  device=self.measure_device, warmup=self.measure_warmup,
                                                  repeats=self.measure_repeats).median_ms
        return self._measured[key]
