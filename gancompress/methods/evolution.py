"""Evolutionary search over a width space under a budget (GAN Compression / once-for-all).

Generation 0 is `population` random in-budget configs; each next generation keeps the best
`parent_frac` of the population, and fills the rest with mutants (each position re-drawn with
probability `mutate_prob`) and crossovers (each position from one of two parents), in the ratio
`mutation_frac` : 1 - `mutation_frac`. Candidates over budget are rejected and redrawn (rejection
sampling), and so are candidates already scored, so every generation explores new sub-networks
(while the space has them; after many failures a repeat, or the smallest config, is used).

Scores (higher is better) are cached by config string, so a config met again costs nothing. The
state (generation, population, cache, RNG) is written atomically after every generation, so an
interrupted search resumes exactly where it stopped and, with the same seed, ends with the same
result as an uninterrupted one.

`repair(config) -> config` (optional) maps every in-budget draw before it is scored: under a
latency budget GAN Compression widens each position where the wider width costs no more
(`WidthSpace.widen_free`), so no candidate carries a layer both narrower and slower than one it
could have had. The repair must be deterministic, stay in the space and never raise the cost.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..fileio import atomic_write_text


@dataclass
class EvolutionConfig:
    population: int = field(default=50, metadata={"help": "candidates per generation of the evolutionary search"})
    generations: int = field(default=20, metadata={"help": "generations of the evolutionary search"})
    parent_frac: float = field(default=0.25, metadata={"help": "share of the population kept as parents"})
    mutation_frac: float = field(default=0.5, metadata={
        "help": "share of children made by mutation, the rest by crossover"})
    mutate_prob: float = field(default=0.2, metadata={"help": "per-position mutation probability"})
    max_tries: int = field(default=1000, metadata={"cli": False})
    seed: int = field(default=0, metadata={"cli": False})  # the run's --seed

    def to_dict(self):
        return asdict(self)


def _rng_state(rng: random.Random):
    v, state, gauss = rng.getstate()
    return [v, list(state), gauss]


def _set_rng_state(rng: random.Random, s):
    rng.setstate((s[0], tuple(s[1]), s[2]))


def evolve(space, score_fn, fits_budget, cfg: EvolutionConfig, state_path: Path | None = None,
           progress=None, log=None, repair=None) -> dict:
    """Returns {"best": config, "best_score", "cache": {config string: score}, "history": [...]}.

    `space`: has choices (per position), sample(rng), format(config), min_config().
    `fits_budget(config) -> bool` (a budget.Budget's fits, in any unit). `score_fn(config) -> float`.
    `progress(n)`: called per new candidate scored."""
    rng = random.Random(cfg.seed)
    st = {"generation": 0, "population": [], "cache": {}, "history": [], "rng": None}
    if state_path is not None and Path(state_path).is_file():
        st = json.loads(Path(state_path).read_text())
        _set_rng_state(rng, st["rng"])
    cache: dict[str, float] = st["cache"]
    fits_cache: dict[str, bool] = {}
    repaired: dict[tuple, tuple] = {}

    def fixed(c):
        c = tuple(c)
        if repair is None:
            return c
        if c not in repaired:
            repaired[c] = tuple(repair(c))
        return repaired[c]

    def fits(c):
        k = space.format(c)
        if k not in fits_cache:
            fits_cache[k] = bool(fits_budget(c))
        return fits_cache[k]

    def draw(make, taken):
        """A new in-budget config (not scored before, not already in this generation) when one
        can be found; else any in-budget one; else the smallest."""
        fallback = None
        for _ in range(cfg.max_tries):
            c = tuple(make())
            if fits(c):  # the repair never raises the cost, so it runs on in-budget draws only
                c = fixed(c)
                if space.format(c) not in cache and c not in taken:
                    taken.add(c)
                    return c
                fallback = fallback or c
        return fallback or fixed(space.min_config())

    def score(c):
        k = space.format(c)
        if k not in cache:
            cache[k] = float(score_fn(c))
            if progress:
                progress(1)
        return cache[k]

    def mutate(parent):
        return [rng.choice(ch) if rng.random() < cfg.mutate_prob else w for w, ch in zip(parent, space.choices)]

    def cross(a, b):
        return [x if rng.random() < 0.5 else y for x, y in zip(a, b)]

    def save():
        st["rng"] = _rng_state(rng)
        if state_path is not None:
            atomic_write_text(Path(state_path), json.dumps(st))

    while st["generation"] < cfg.generations:
        g = st["generation"]
        taken: set = set()
        if g == 0:
            pop = [draw(lambda: space.sample(rng), taken) for _ in range(cfg.population)]
        else:
            prev = [tuple(c) for c in st["population"]]
            n_par = max(2, int(round(cfg.parent_frac * len(prev))))
            parents = sorted(prev, key=lambda c: -cache[space.format(c)])[:n_par]
            n_mut = int(round(cfg.mutation_frac * (cfg.population - n_par)))
            taken.update(parents)
            kids = [draw(lambda: mutate(rng.choice(parents)), taken) for _ in range(n_mut)]
            kids += [draw(lambda: cross(*rng.sample(parents, 2)), taken) for _ in range(cfg.population - n_par - n_mut)]
            pop = parents + kids
        scores = [score(c) for c in pop]
        best = max(range(len(pop)), key=lambda i: scores[i])
        st["history"].append({"generation": g, "best": space.format(pop[best]), "best_score": scores[best],
                              "evaluated": len(cache)})
        if log:
            log(f"generation {g}: best {scores[best]:.4f} ({space.format(pop[best])}), {len(cache)} evaluated")
        st["population"] = [list(c) for c in pop]
        st["generation"] = g + 1
        save()
    best_key = max(cache, key=lambda k: cache[k]) if cache else space.format(space.min_config())
    best_cfg = tuple(int(v) for v in best_key.split("_"))
    # the best of everything scored that fits (the cache holds only in-budget configs)
    return {"best": best_cfg, "best_score": cache.get(best_key), "cache": cache, "history": st["history"]}
