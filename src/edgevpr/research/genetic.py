"""Per-layer precision by genetic search under an average bit-width budget (Grainge et al. 2024
Algorithm 1), with the baselines it is judged against.

A candidate assigns one precision (int4, int8, fp16) to every searchable layer. Its average
bit-width is the plain mean over layers or, with ``weighting="params"``, the mean weighted by
each layer's parameter count (what model bytes follow); a candidate is feasible when that
average is at most the budget B.

Algorithm 1: a population of N random feasible candidates; each step samples C of them,
takes the two fittest as parents and removes the sample's worst from the population; the
child is a crossover (sections between random cut points taken alternately from the two
parents) followed by mutation (with probability p_m one random layer's precision is redrawn
from a categorical distribution that favours the precisions this layer is least sensitive
to), repaired to respect B, evaluated and pushed into the population. After G steps (or a
time limit, which counts the earlier runs of a resumed search) the fittest candidate is returned.

Warm start (``warm_start=True``, our addition to Algorithm 1): the initial population also
holds the greedy assignment and, where the budget allows it, uniform int8, in place of two
random candidates. The search then never returns anything less fit than those two; with the
few hundred evaluations a CPU affords, random starts alone can end below uniform int8. The
random-search baseline receives the same two candidates.

Fill (``fill=True``, also ours): repair lowers layers one notch at a time, so a repaired
candidate often leaves part of the budget unused; fill raises, while the budget holds, the
layer whose measured sensitivity drops most per bit added. Every candidate (and the random
baseline's, with ``fill``) then spends the whole budget. ``warm_start=False, fill=False`` is
Algorithm 1 as published. All randomness comes from one seeded
generator whose state is saved with the population, so an interrupted search resumes and
ends as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgevpr.atomic import read_json, write_json
from edgevpr.errors import ConfigError
from edgevpr.research.simulate import BITS, PRECISIONS

WEIGHTINGS = ("plain", "params")


@dataclass(frozen=True)
class SearchSettings:
    budget: float
    population: int = 20
    sample: int = 5
    mutation: float = 0.5
    steps: int = 200
    time_limit_s: float | None = None
    seed: int = 0
    weighting: str = "plain"
    warm_start: bool = True
    fill: bool = True


def layer_weights(params: list[int], weighting: str) -> np.ndarray:
    """Each layer's share of the average bit-width: equal, or by parameter count."""
    weights = np.asarray(params if weighting == "params" else [1] * len(params), dtype=np.float64)
    return weights / weights.sum()


def average_bits(assignment: list[str], weights: np.ndarray) -> float:
    return float(np.dot(weights, [BITS[p] for p in assignment]))


@dataclass
class Problem:
    """Layers (their parameter counts) and their measured sensitivity."""

    params: list[int]
    sensitivity: dict[str, list[float]]  # precision -> per-layer descriptor error with only that layer lowered
    budget: float
    weighting: str = "plain"

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown bit-width weighting {self.weighting!r}; use {', '.join(WEIGHTINGS)}")
        if not BITS["int4"] <= self.budget:
            raise ConfigError(f"budget B = {self.budget:g} bits is below int4 everywhere (4 bits): nothing is feasible")
        self.weights = layer_weights(self.params, self.weighting)

    @property
    def size(self) -> int:
        return len(self.params)

    def average_bits(self, assignment: list[str]) -> float:
        return average_bits(assignment, self.weights)

    def feasible(self, assignment: list[str]) -> bool:
        return self.average_bits(assignment) <= self.budget + 1e-9

    def _cost_of_lowering(self, layer: int, precision: str) -> float:
        lower = PRECISIONS[PRECISIONS.index(precision) - 1]
        gained = self.sensitivity[lower][layer] - self.sensitivity.get(precision, [0.0] * self.size)[layer]
        saved = (BITS[precision] - BITS[lower]) * self.weights[layer]
        return max(gained, 0.0) / saved

    def repair(self, assignment: list[str], rng: np.random.Generator | None = None) -> list[str]:
        """Lower layers one notch at a time until the average fits the budget: the layer with
        the least added sensitivity per bit saved (greedy), or, given ``rng``, a layer drawn
        with probability inversely proportional to that cost."""
        assignment = list(assignment)
        while not self.feasible(assignment):
            layers = [i for i, p in enumerate(assignment) if p != "int4"]
            costs = np.array([self._cost_of_lowering(i, assignment[i]) for i in layers])
            if rng is None:
                layer = layers[int(np.argmin(costs))]
            else:
                weights = 1.0 / (costs + max(float(np.median(costs)), 1e-12) * 1e-2)
                layer = layers[int(rng.choice(len(layers), p=weights / weights.sum()))]
            assignment[layer] = PRECISIONS[PRECISIONS.index(assignment[layer]) - 1]
        return assignment

    def fill(self, assignment: list[str]) -> list[str]:
        """Spend the bits a feasible candidate leaves unused: raise one notch, while the budget
        holds, the layer whose sensitivity drops most per bit added."""
        assignment = list(assignment)
        while True:
            best, best_gain = None, 0.0
            for i, precision in enumerate(assignment):
                if precision == PRECISIONS[-1]:
                    continue
                higher = PRECISIONS[PRECISIONS.index(precision) + 1]
                raised = assignment[:i] + [higher] + assignment[i + 1 :]
                if not self.feasible(raised):
                    continue
                gain = self._cost_of_lowering(i, higher)
                if gain > best_gain:
                    best, best_gain = i, gain
            if best is None:
                return assignment
            assignment[best] = PRECISIONS[PRECISIONS.index(assignment[best]) + 1]

    def random_feasible(self, rng: np.random.Generator) -> list[str]:
        return self.repair([PRECISIONS[i] for i in rng.integers(0, len(PRECISIONS), size=self.size)], rng)

    def redraw_probabilities(self, layer: int) -> np.ndarray:
        """Favour the precisions this layer is least sensitive to (relative to other layers)."""
        weights = []
        for precision in PRECISIONS:
            errors = self.sensitivity.get(precision)
            if errors is None:  # fp16: no measurable error
                weights.append(1.0)
                continue
            scale = float(np.median(errors)) or 1e-12
            weights.append(1.0 / (1.0 + errors[layer] / scale))
        weights = np.asarray(weights)
        return weights / weights.sum()

    def crossover(self, first: list[str], second: list[str], rng: np.random.Generator) -> list[str]:
        cuts = sorted(rng.choice(np.arange(1, self.size), size=min(2, self.size - 1), replace=False))
        child, parents, start = [], (first, second), 0
        for turn, cut in enumerate([*cuts, self.size]):
            child += parents[turn % 2][start:cut]
            start = cut
        return child

    def mutate(self, assignment: list[str], probability: float, rng: np.random.Generator) -> list[str]:
        assignment = list(assignment)
        if rng.random() < probability:
            layer = int(rng.integers(self.size))
            assignment[layer] = PRECISIONS[rng.choice(len(PRECISIONS), p=self.redraw_probabilities(layer))]
        return assignment


@dataclass
class SearchState:
    population: list[tuple[list[str], float]] = field(default_factory=list)
    step: int = 0
    evaluations: int = 0
    history: list[float] = field(default_factory=list)  # best fitness after each step
    rng: dict | None = None
    cache: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # spent searching, over every run of an interrupted-and-resumed search


class CachedFitness:
    """Each distinct candidate is evaluated once; ``evaluations`` counts distinct ones."""

    def __init__(self, fitness: Callable[[list[str]], float], state: SearchState):
        self.fitness, self.state = fitness, state

    def __call__(self, assignment: list[str]) -> float:
        key = ",".join(assignment)
        if key not in self.state.cache:
            self.state.cache[key] = self.fitness(assignment)
            self.state.evaluations += 1
        return self.state.cache[key]


def _save(path: Path | None, settings: SearchSettings, state: SearchState, fingerprint: str | None) -> None:
    if path is not None:
        write_json(path, {"settings": asdict(settings), "fingerprint": fingerprint, "state": asdict(state)})


def _load(path: Path | None, settings: SearchSettings, fingerprint: str | None) -> SearchState | None:
    if path is None or not path.is_file():
        return None
    saved = read_json(path, "search state", ("settings", "state"))
    if saved["settings"] != json.loads(json.dumps(asdict(settings))):
        raise ConfigError(f"{path}: a search with other settings; remove it or choose another state file")
    if saved.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"{path}: a search of another model, calibration or simulation (its fitness values "
            f"do not apply); remove it or choose another state file"
        )
    state = SearchState(**saved["state"])
    state.population = [(list(a), f) for a, f in state.population]
    return state


def genetic_search(
    problem: Problem,
    fitness: Callable[[list[str]], float],
    settings: SearchSettings,
    state_path: str | Path | None = None,
    progress: Callable[[SearchState], None] | None = None,
    save_every: int = 10,
    fingerprint: str | None = None,
) -> tuple[list[str], float, SearchState]:
    """Algorithm 1. Returns the fittest candidate, its fitness and the final state. The state
    file resumes only a search with the same settings and ``fingerprint`` (what the fitness
    depends on besides the settings)."""
    if settings.population < 2 or not 2 <= settings.sample <= settings.population:
        raise ConfigError(
            f"need population >= 2 and 2 <= sample <= population, got {settings.population}, {settings.sample}"
        )
    if not 0 <= settings.mutation <= 1:
        raise ConfigError(f"mutation probability must be in [0, 1], got {settings.mutation}")
    path = Path(state_path) if state_path else None
    rng = np.random.default_rng(settings.seed)
    started = time.monotonic()
    state = _load(path, settings, fingerprint)
    before = state.seconds if state is not None else 0.0

    def elapsed() -> float:
        return before + time.monotonic() - started

    if state is None:
        state = SearchState()
        evaluate = CachedFitness(fitness, state)
        starts = warm_start_candidates(problem)[: settings.population] if settings.warm_start else []
        for index in range(settings.population):
            candidate = starts[index] if index < len(starts) else problem.random_feasible(rng)
            candidate = problem.fill(candidate) if settings.fill else candidate
            state.population.append((candidate, evaluate(candidate)))
    else:
        evaluate = CachedFitness(fitness, state)
        rng.bit_generator.state = state.rng
    while state.step < settings.steps:
        if settings.time_limit_s is not None and elapsed() > settings.time_limit_s:
            break
        chosen = rng.choice(len(state.population), size=settings.sample, replace=False)
        ranked = sorted(chosen, key=lambda i: state.population[i][1], reverse=True)
        first, second = state.population[ranked[0]][0], state.population[ranked[1]][0]
        state.population.pop(ranked[-1])
        child = problem.repair(problem.mutate(problem.crossover(first, second, rng), settings.mutation, rng), rng)
        if settings.fill:
            child = problem.fill(child)
        state.population.append((child, evaluate(child)))
        state.step += 1
        state.history.append(max(f for _, f in state.population))
        state.rng = rng.bit_generator.state
        if progress:
            progress(state)
        if state.step % save_every == 0 or state.step == settings.steps:
            state.seconds = elapsed()
            _save(path, settings, state, fingerprint)
    state.rng, state.seconds = rng.bit_generator.state, elapsed()
    _save(path, settings, state, fingerprint)
    best, best_fitness = max(state.population, key=lambda item: item[1])
    return best, best_fitness, state


def random_search(
    problem: Problem,
    fitness: Callable[[list[str]], float],
    evaluations: int,
    seed: int = 0,
    warm_start: bool = False,
    fill: bool = False,
) -> tuple[list[str], float, list[float]]:
    """The best of ``evaluations`` distinct random feasible candidates (the first ones the
    warm-start candidates, if asked; each one filled up to the budget, if asked)."""
    rng, state = np.random.default_rng(seed), SearchState()
    evaluate = CachedFitness(fitness, state)
    best, best_fitness, history, tries = None, -np.inf, [], 0
    starts = warm_start_candidates(problem) if warm_start else []
    while state.evaluations < evaluations and tries < 100 * evaluations:
        candidate = starts[tries] if tries < len(starts) else problem.random_feasible(rng)
        candidate = problem.fill(candidate) if fill else candidate
        tries += 1
        value = evaluate(candidate)
        if value > best_fitness:
            best, best_fitness = candidate, value
        history.append(best_fitness)
    return best, best_fitness, history


def greedy_by_sensitivity(problem: Problem) -> list[str]:
    """Everything fp16, then the repair rule: lower the cheapest layer until the budget holds;
    then raise what the last steps left room for (``Problem.fill``)."""
    return problem.fill(problem.repair(["fp16"] * problem.size))


def uniform(problem: Problem, precision: str) -> list[str]:
    return [precision] * problem.size


def warm_start_candidates(problem: Problem) -> list[list[str]]:
    """The greedy assignment, and uniform int8 where it fits the budget."""
    greedy, int8 = greedy_by_sensitivity(problem), uniform(problem, "int8")
    return [greedy, int8] if problem.feasible(int8) and int8 != greedy else [greedy]
