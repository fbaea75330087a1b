"""The blend solver: how many tokens of each source every training phase draws.

Two-phase pretraining (Feng et al. 2024; the Nemotron-CC 15T run) trains on a web-heavy blend first and
on a blend that upweights high-quality sources last. Each source has a token supply (one epoch), a quality
weight and an epoch cap; each phase has a share of the total budget and the sources it may draw from.

The rule, in order:

1. **Phase tokens.** Phase ``p`` gets ``share_p * budget`` tokens, rounded by largest remainder (ties to
   the earlier phase) so the phases add up to the budget exactly. Shares are normalised by their sum,
   which must be 1 within 1e-9.
2. **Desired shares.** Within a phase, a source's desired share is proportional to ``weight_s * tokens_s``
   over the sources the phase may draw from (``PhaseSpec.weights`` overrides ``weight_s`` for that phase;
   sources it does not name keep their own weight). A weight of 2 means twice as many epochs of that
   source as of a weight-1 source.
3. **Epoch caps (water-filling).** A source's cap is ``floor(max_epochs_s * tokens_s)`` tokens over all
   phases together. Each round, every phase spreads the tokens it still needs over its sources that are
   not exhausted, in proportion to their desired shares. Every source whose total over the phases then
   exceeds its cap is scaled down to the cap (proportionally across the phases that use it) and marked
   exhausted; its allocations are fixed from then on, and the deficit goes to the other sources in the
   next round. Each round exhausts at least one source, so the loop ends. Sources over their cap in the
   same round are exhausted together, so the result does not depend on the order of the sources.
4. **Repair.** Scaling a shared source proportionally can starve a phase that has no other source while
   another phase could have used something else (phase 2 draws only from ``high``, phase 1 from ``high``
   and ``medium``). Before declaring a phase infeasible, the solver moves exhausted tokens towards it
   along augmenting paths (phase -> exhausted source -> another phase using it -> ... -> a phase with a
   source that has room left), shortest paths first, sources in name order. The last phase of the path
   refills from all its sources with room, in proportion to their desired shares (capped at their room);
   the phases on the path keep their token counts and their mix shifts only as far as needed. This step
   runs only when step 3 leaves a deficit, and fills every phase whenever any plan under the caps can.
5. **Infeasible.** A phase still short after the repair cannot be filled under the caps:
   :class:`InfeasibleBlend` names every such phase, the tokens it needs and can get (rounded down), the
   shortfall, and the sources that ran out with their caps.
6. **Integer tokens.** Allocations are whole tokens: per phase the floors of the exact (rational)
   allocations plus one token for the largest remainders (ties by source name), skipping a source at its
   cap; a token that no source of the phase can take moves along an augmenting path as in step 4. Each
   phase's allocations add up to its tokens exactly and no source goes over its cap.

All arithmetic before rounding is exact (:class:`fractions.Fraction`); sources are handled in name order and
phases in the given order, so the same inputs give the same plan whatever the order of ``supplies`` or of a
phase's ``sources``.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

logger = logging.getLogger(__name__)

SHARE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SourceSupply:
    """One source of a blend: its tokens (one epoch), quality weight and cap in epochs over all phases."""

    name: str
    tokens: int
    weight: float
    max_epochs: float


@dataclass(frozen=True)
class PhaseSpec:
    """One training phase: its share of the budget, the sources it may draw from, optional weight overrides."""

    name: str
    share: float
    sources: tuple[str, ...]
    weights: dict[str, float] | None = None


@dataclass
class PhasePlan:
    """The tokens one phase draws from each of its sources (every allowed source listed, 0 included)."""

    name: str
    tokens: int
    allocations: dict[str, int]

    def weights(self) -> dict[str, float]:
        """Each source's fraction of this phase's tokens (sums to 1); sources with 0 tokens are left out."""
        return {name: n / self.tokens for name, n in self.allocations.items() if n > 0}


@dataclass
class BlendPlan:
    """The solved blend: the budget, the phases in order, and the supplies they draw from (by name)."""

    budget_tokens: int
    phases: list[PhasePlan]
    supplies: dict[str, SourceSupply]

    def drawn(self) -> dict[str, int]:
        """Tokens drawn from each source over all phases."""
        totals = {name: 0 for name in self.supplies}
        for phase in self.phases:
            for name, n in phase.allocations.items():
                totals[name] += n
        return totals

    def epochs(self) -> dict[str, float]:
        """Epochs of each source over all phases: tokens drawn / tokens available (0 for an empty source)."""
        return {name: _epochs(n, self.supplies[name].tokens) for name, n in self.drawn().items()}

    def phase_epochs(self, phase: str) -> dict[str, float]:
        """Epochs of each source drawn in one phase."""
        for plan in self.phases:
            if plan.name == phase:
                return {name: _epochs(n, self.supplies[name].tokens) for name, n in plan.allocations.items()}
        raise KeyError(f"blend plan has no phase {phase!r} (phases: {', '.join(p.name for p in self.phases)})")

    def to_json(self) -> dict[str, Any]:
        """A JSON-able summary: the budget, per phase its tokens and per source tokens/weight/epochs, and per
        source its supply, cap, tokens drawn and epochs over all phases."""
        drawn = self.drawn()
        epochs = self.epochs()
        phases = []
        for plan in self.phases:
            weights = plan.weights()
            phase_epochs = self.phase_epochs(plan.name)
            phases.append({
                "name": plan.name,
                "tokens": plan.tokens,
                "share": plan.tokens / self.budget_tokens,
                "sources": {
                    name: {"tokens": n, "weight": weights.get(name, 0.0), "epochs": phase_epochs[name]}
                    for name, n in plan.allocations.items()
                },
            })
        sources = {
            name: {
                "tokens_available": s.tokens,
                "weight": s.weight,
                "max_epochs": s.max_epochs,
                "tokens_drawn": drawn[name],
                "epochs": epochs[name],
            }
            for name, s in self.supplies.items()
        }
        return {"budget_tokens": self.budget_tokens, "phases": phases, "sources": sources}


@dataclass
class Shortfall:
    """A phase that cannot be filled: tokens needed and available under the caps, and who ran out."""

    phase: str
    needed: int
    available: int
    short: int
    exhausted: list[str] = field(default_factory=list)


class InfeasibleBlend(ValueError):
    """Names each phase that cannot be filled: tokens needed, tokens its sources can still give under their
    epoch caps, the shortfall, and the sources that ran out (with their cap in epochs and tokens)."""

    def __init__(self, message: str, shortfalls: list[Shortfall]) -> None:
        super().__init__(message)
        self.shortfalls = shortfalls


def _epochs(drawn: int, tokens: int) -> float:
    return drawn / tokens if tokens else 0.0


def _positive_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _validate(supplies: Sequence[SourceSupply], phases: Sequence[PhaseSpec], budget_tokens: int) -> None:
    """Raise ValueError naming the first thing wrong with the specification."""
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens <= 0:
        raise ValueError(f"blend solver: budget_tokens must be a positive int, got {budget_tokens!r}")
    if not supplies:
        raise ValueError("blend solver: no sources given")
    if not phases:
        raise ValueError("blend solver: no phases given")
    seen: set[str] = set()
    for s in supplies:
        if not isinstance(s.name, str) or not s.name:
            raise ValueError(f"blend solver: source name must be a non-empty string, got {s.name!r}")
        if s.name in seen:
            raise ValueError(f"blend solver: duplicate source name {s.name!r}")
        seen.add(s.name)
        if isinstance(s.tokens, bool) or not isinstance(s.tokens, int) or s.tokens < 0:
            raise ValueError(f"blend solver: source {s.name!r}: tokens must be an int >= 0, got {s.tokens!r}")
        if not _positive_finite(s.weight):
            raise ValueError(f"blend solver: source {s.name!r}: weight must be > 0, got {s.weight!r}")
        if not _positive_finite(s.max_epochs):
            raise ValueError(f"blend solver: source {s.name!r}: max_epochs must be > 0, got {s.max_epochs!r}")
    tokens = {s.name: s.tokens for s in supplies}
    phase_names: set[str] = set()
    for p in phases:
        if not isinstance(p.name, str) or not p.name:
            raise ValueError(f"blend solver: phase name must be a non-empty string, got {p.name!r}")
        if p.name in phase_names:
            raise ValueError(f"blend solver: duplicate phase name {p.name!r}")
        phase_names.add(p.name)
        if not _positive_finite(p.share) or p.share > 1:
            raise ValueError(f"blend solver: phase {p.name!r}: share must be in (0, 1], got {p.share!r}")
        if isinstance(p.sources, str) or not p.sources:
            raise ValueError(f"blend solver: phase {p.name!r}: sources must be a non-empty list of source names")
        if len(set(p.sources)) != len(p.sources):
            raise ValueError(f"blend solver: phase {p.name!r}: a source is listed twice in {list(p.sources)}")
        unknown = sorted(set(p.sources) - seen)
        if unknown:
            raise ValueError(f"blend solver: phase {p.name!r}: unknown source(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(seen))})")
        for name, w in (p.weights or {}).items():
            if name not in p.sources:
                raise ValueError(f"blend solver: phase {p.name!r}: weight given for {name!r}, "
                                 "which is not one of this phase's sources")
            if not _positive_finite(w):
                raise ValueError(f"blend solver: phase {p.name!r}: weight of {name!r} must be > 0, got {w!r}")
        if all(tokens[name] == 0 for name in p.sources):
            raise ValueError(f"blend solver: phase {p.name!r}: its sources ({', '.join(sorted(p.sources))}) "
                             "have no tokens")
    total = math.fsum(p.share for p in phases)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ValueError(f"blend solver: phase shares must sum to 1, they sum to {total!r} "
                         f"({', '.join(f'{p.name}={p.share!r}' for p in phases)})")


def phase_token_counts(shares: Sequence[float], budget_tokens: int) -> list[int]:
    """Split ``budget_tokens`` by ``shares`` (normalised by their sum) with largest-remainder rounding;
    ties go to the earlier share. The counts sum to the budget exactly."""
    exact = [Fraction(s) for s in shares]
    total = sum(exact)
    quotas = [q * budget_tokens / total for q in exact]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: budget_tokens - sum(counts)]:
        counts[i] += 1
    return counts


class _Problem:
    """The solver's working state: exact caps, desired shares and allocations, phases by index."""

    def __init__(self, supplies: Sequence[SourceSupply], phases: Sequence[PhaseSpec], phase_tokens: list[int]):
        self.supplies = {s.name: s for s in sorted(supplies, key=lambda s: s.name)}
        self.names = [p.name for p in phases]
        self.needed = phase_tokens
        self.caps = {s.name: math.floor(Fraction(s.max_epochs) * s.tokens) for s in self.supplies.values()}
        # Desired share numerators (weight * tokens); sources with none are never drawn from.
        self.desire: list[dict[str, Fraction]] = []
        for p in phases:
            overrides = p.weights or {}
            self.desire.append({
                name: Fraction(overrides.get(name, self.supplies[name].weight)) * self.supplies[name].tokens
                for name in sorted(p.sources)
            })
        self.alloc: list[dict[str, Fraction]] = [{name: Fraction(0) for name in d} for d in self.desire]

    def drawable(self, p: int) -> list[str]:
        """Sources phase ``p`` may draw from and that have tokens, by name."""
        return [name for name, d in self.desire[p].items() if d > 0]

    def used(self, name: str) -> Fraction:
        return sum((a.get(name, Fraction(0)) for a in self.alloc), Fraction(0))

    def water_fill(self) -> None:
        """Step 3 of the rule: proportional allocation with exhausted sources fixed at their caps."""
        exhausted: set[str] = set()
        while True:
            for p, desire in enumerate(self.desire):
                active = [n for n in self.drawable(p) if n not in exhausted]
                fixed = sum((self.alloc[p][n] for n in desire if n in exhausted), Fraction(0))
                total_desire = sum((desire[n] for n in active), Fraction(0))
                for n in active:
                    self.alloc[p][n] = (self.needed[p] - fixed) * desire[n] / total_desire
            over = [n for n in self.supplies if n not in exhausted and self.used(n) > self.caps[n]]
            if not over:
                return
            for n in over:
                scale = self.caps[n] / self.used(n)
                for a in self.alloc:
                    if n in a:
                        a[n] *= scale
            exhausted.update(over)
            logger.debug("blend solver: exhausted %s", ", ".join(over))

    def deficit(self, p: int) -> Fraction:
        return self.needed[p] - sum(self.alloc[p].values(), Fraction(0))

    def augmenting_path(self, start: int, alloc: Sequence[dict[str, Any]], slack: dict[str, Any],
                        prefer: dict[str, Fraction] | None = None) -> list[tuple[int, str]] | None:
        """A shortest path start -> s1 -> p1 -> s2 -> ... -> sk where sk has ``slack`` and each p_i gives up
        some of s_i in ``alloc``, as [(start, s1), (p1, s2), ...]; None if there is none. Sources are tried in
        name order, or by ``prefer`` (largest first) on the first hop."""
        first = self.drawable(start)
        if prefer is not None:
            first = sorted(first, key=lambda n: (-prefer.get(n, Fraction(0)), n))
        taken_by: dict[str, int] = {}  # source -> the phase that takes more of it
        reached_via: dict[int, str] = {}  # phase -> the source it gives up
        queue: deque[tuple[int, list[str]]] = deque([(start, first)])
        while queue:
            p, candidates = queue.popleft()
            for name in candidates:
                if name in taken_by:
                    continue
                taken_by[name] = p
                if slack[name] > 0:
                    return self._unwind(name, taken_by, reached_via)
                for q in range(len(self.desire)):
                    if q != start and q not in reached_via and alloc[q].get(name, 0) > 0:
                        reached_via[q] = name
                        queue.append((q, self.drawable(q)))
        return None

    @staticmethod
    def _unwind(last: str, taken_by: dict[str, int], reached_via: dict[int, str]) -> list[tuple[int, str]]:
        path: list[tuple[int, str]] = []
        name: str | None = last
        while name is not None:
            p = taken_by[name]
            path.append((p, name))
            name = reached_via.get(p)
        path.reverse()
        return path

    def repair(self) -> None:
        """Step 4 of the rule: push each phase's deficit along augmenting paths while there are any. The last
        phase of a path refills from all its sources with room left, in proportion to their desired shares."""
        slack = {n: self.caps[n] - self.used(n) for n in self.supplies}
        for p in range(len(self.desire)):
            while (need := self.deficit(p)) > 0:
                path = self.augmenting_path(p, self.alloc, slack)
                if path is None:
                    break
                last = path[-1][0]
                room = {n: slack[n] for n in self.drawable(last) if slack[n] > 0}
                given_up = [self.alloc[q][n] for (q, _), (_, n) in zip(path[1:], path[:-1])]
                amount = min([need, sum(room.values())] + given_up)
                for i, (q, name) in enumerate(path[:-1]):
                    self.alloc[q][name] += amount
                    self.alloc[path[i + 1][0]][name] -= amount
                for name, extra in _capped_proportional(amount, self.desire[last], room).items():
                    self.alloc[last][name] += extra
                    slack[name] -= extra
                logger.info("blend solver: moved %.0f tokens to phase %r along %s", float(amount), self.names[p],
                            " -> ".join([f"{self.names[q]}:{n}" for q, n in path[:-1]] + [self.names[last]]))

    def shortfalls(self) -> list[Shortfall]:
        result = []
        for p, name in enumerate(self.names):
            if self.deficit(p) <= 0:
                continue
            available = math.floor(sum(self.alloc[p].values(), Fraction(0)))
            result.append(Shortfall(name, self.needed[p], available, self.needed[p] - available,
                                    [n for n in self.drawable(p)]))
        return result

    def rounded(self) -> list[dict[str, int]]:
        """Step 6 of the rule: whole tokens, each phase summing to its tokens, no source over its cap."""
        ints: list[dict[str, int]] = [{n: math.floor(a) for n, a in alloc.items()} for alloc in self.alloc]
        slack = dict(self.caps)
        for alloc in ints:
            for n, a in alloc.items():
                slack[n] -= a
        for p, alloc in enumerate(ints):
            left = self.needed[p] - sum(alloc.values())
            remainders = {n: self.alloc[p][n] - alloc[n] for n in alloc}
            for n in sorted(alloc, key=lambda n: (-remainders[n], n)):
                if left == 0 or remainders[n] == 0:
                    break
                if slack[n] > 0:
                    alloc[n] += 1
                    slack[n] -= 1
                    left -= 1
            while left > 0:  # a safety net: largest remainders have always sufficed in tests
                path = self.augmenting_path(p, ints, slack, remainders)
                if path is None:
                    raise RuntimeError(f"blend solver: cannot round phase {self.names[p]!r} to whole tokens "
                                       "under the epoch caps (this is a bug: the exact plan fits)")
                for i, (q, name) in enumerate(path):
                    ints[q][name] += 1
                    if i + 1 < len(path):
                        ints[path[i + 1][0]][name] -= 1
                slack[path[-1][1]] -= 1
                left -= 1
        return ints


def _capped_proportional(amount: Fraction, desire: dict[str, Fraction], room: dict[str, Fraction]
                          ) -> dict[str, Fraction]:
    """Split ``amount`` (at most the total room) over ``room``'s sources in proportion to ``desire``, none
    above its room: water-filling within one phase."""
    share: dict[str, Fraction] = {}
    left = amount
    while left > 0:
        open_ = [n for n in sorted(room) if n not in share]
        total = sum((desire[n] for n in open_), Fraction(0))
        full = [n for n in open_ if left * desire[n] / total >= room[n]]
        if not full:
            for n in open_:
                share[n] = left * desire[n] / total
            break
        for n in full:
            share[n] = room[n]
            left -= room[n]
    return share


def _infeasible_message(problem: _Problem, shortfalls: list[Shortfall]) -> str:
    parts = []
    for sf in shortfalls:
        p = problem.names.index(sf.phase)
        ran_out = []
        for name in sf.exhausted:
            supply = problem.supplies[name]
            here = math.floor(problem.alloc[p][name])
            cap = problem.caps[name]
            shared = f", {here:,} of them in this phase" if here < cap else ""
            verb = " ran out" if not ran_out else ""
            ran_out.append(f"{name}{verb} at {supply.max_epochs:g} epochs ({cap:,} tokens{shared})")
        parts.append(
            f'phase "{sf.phase}" needs {sf.needed:,} tokens but its sources can give {sf.available:,} under '
            f"their epoch caps (short by {sf.short:,}): {', '.join(ran_out)}; raise max_epochs, "
            "lower the budget or this phase's share, or add sources"
        )
    return "infeasible blend: " + "; ".join(parts) if len(parts) == 1 else \
        "infeasible blend:\n" + "\n".join(f"- {part}" for part in parts)


def solve_blend(supplies: list[SourceSupply], phases: list[PhaseSpec], budget_tokens: int) -> BlendPlan:
    """Per-phase token allocations honouring the phase shares, the budget and the epoch caps (the rule in this
    module's docstring). Raises ValueError for an invalid specification and :class:`InfeasibleBlend` when some
    phase cannot be filled under the caps."""
    _validate(supplies, phases, budget_tokens)
    phase_tokens = phase_token_counts([p.share for p in phases], budget_tokens)
    for p, n in zip(phases, phase_tokens):
        if n == 0:
            raise ValueError(f"blend solver: phase {p.name!r} gets 0 tokens (share {p.share!r} of a budget of "
                             f"{budget_tokens:,}); raise the budget or the share")
    problem = _Problem(supplies, phases, phase_tokens)
    problem.water_fill()
    if any(problem.deficit(p) > 0 for p in range(len(phases))):
        problem.repair()
    shortfalls = problem.shortfalls()
    if shortfalls:
        raise InfeasibleBlend(_infeasible_message(problem, shortfalls), shortfalls)
    ints = problem.rounded()
    return BlendPlan(
        budget_tokens=budget_tokens,
        phases=[PhasePlan(name, n, alloc) for name, n, alloc in zip(problem.names, phase_tokens, ints)],
        supplies=dict(problem.supplies),
    )
