"""The blend solver: invariants over random specs (against an independent max-flow feasibility check),
hand-checked small blends, infeasible specs and validation errors."""

from __future__ import annotations

import json
import math
import random
from collections import deque
from fractions import Fraction

import pytest

from stages.blend_solver import (
    BlendPlan,
    InfeasibleBlend,
    PhaseSpec,
    SourceSupply,
    phase_token_counts,
    solve_blend,
)


def cap_tokens(s: SourceSupply) -> int:
    return math.floor(Fraction(s.max_epochs) * s.tokens)


def max_fill(supplies: list[SourceSupply], phases: list[PhaseSpec], phase_tokens: list[int]) -> int:
    """The most tokens any integer allocation can place (Edmonds-Karp: source -> phase (its tokens) ->
    allowed supply -> sink (its cap)). Independent of the solver's code."""
    names = sorted(s.name for s in supplies)
    n_p = len(phases)
    node = {name: 1 + n_p + i for i, name in enumerate(names)}
    sink = 1 + n_p + len(names)
    cap: dict[tuple[int, int], int] = {}
    adj: dict[int, set[int]] = {i: set() for i in range(sink + 1)}

    def edge(u: int, v: int, c: int) -> None:
        cap[(u, v)] = cap.get((u, v), 0) + c
        cap.setdefault((v, u), 0)
        adj[u].add(v)
        adj[v].add(u)

    by_name = {s.name: s for s in supplies}
    for p, spec in enumerate(phases):
        edge(0, 1 + p, phase_tokens[p])
        for name in spec.sources:
            edge(1 + p, node[name], 10**30)
    for name in names:
        edge(node[name], sink, cap_tokens(by_name[name]))
    flow = 0
    while True:
        parent = {0: 0}
        queue = deque([0])
        while queue and sink not in parent:
            u = queue.popleft()
            for v in sorted(adj[u]):
                if v not in parent and cap[(u, v)] > 0:
                    parent[v] = u
                    queue.append(v)
        if sink not in parent:
            return flow
        path = []
        v = sink
        while v != 0:
            path.append((parent[v], v))
            v = parent[v]
        amount = min(cap[e] for e in path)
        for u, v in path:
            cap[(u, v)] -= amount
            cap[(v, u)] += amount
        flow += amount


def random_spec(rng: random.Random) -> tuple[list[SourceSupply], list[PhaseSpec], int]:
    n_sources = rng.randint(1, 6)
    supplies = [
        SourceSupply(
            name=f"src{i}",
            tokens=0 if rng.random() < 0.08 else rng.randint(1, 10**rng.randint(1, 7)),
            weight=rng.choice([0.5, 1.0, 1.0, 2.0, 3.7, rng.uniform(0.1, 10)]),
            max_epochs=rng.choice([0.3, 1.0, 2.0, 4.0, 8.0, rng.uniform(0.05, 10)]),
        )
        for i in range(n_sources)
    ]
    with_tokens = [s.name for s in supplies if s.tokens > 0] or [supplies[0].name]
    if supplies[0].name == with_tokens[0] and supplies[0].tokens == 0:
        supplies[0] = SourceSupply(supplies[0].name, 1000, supplies[0].weight, supplies[0].max_epochs)
    n_phases = rng.randint(1, 3)
    raw = [rng.uniform(0.1, 1.0) for _ in range(n_phases)]
    shares = [r / sum(raw) for r in raw]
    phases = []
    for p in range(n_phases):
        chosen = set(rng.sample([s.name for s in supplies], rng.randint(1, n_sources)))
        chosen.add(rng.choice(with_tokens))
        weights = None
        if rng.random() < 0.3:
            weights = {name: rng.uniform(0.2, 5.0) for name in sorted(chosen) if rng.random() < 0.5}
        phases.append(PhaseSpec(f"phase{p + 1}", shares[p], tuple(sorted(chosen)), weights))
    capacity = sum(cap_tokens(s) for s in supplies)
    budget = max(50, int(capacity * rng.uniform(0.05, 1.2)))
    return supplies, phases, budget


def plan_as_tuple(plan: BlendPlan) -> tuple:
    return (plan.budget_tokens, [(p.name, p.tokens, sorted(p.allocations.items())) for p in plan.phases])


def check_invariants(plan: BlendPlan, supplies: list[SourceSupply], phases: list[PhaseSpec], budget: int) -> None:
    assert plan.budget_tokens == budget
    assert [p.name for p in plan.phases] == [p.name for p in phases]
    assert sum(p.tokens for p in plan.phases) == budget
    assert [p.tokens for p in plan.phases] == phase_token_counts([p.share for p in phases], budget)
    for plan_phase, spec in zip(plan.phases, phases):
        assert set(plan_phase.allocations) == set(spec.sources)
        assert all(isinstance(n, int) and n >= 0 for n in plan_phase.allocations.values())
        assert sum(plan_phase.allocations.values()) == plan_phase.tokens
        weights = plan_phase.weights()
        assert set(weights) <= set(spec.sources)
        assert math.isclose(sum(weights.values()), 1.0, rel_tol=0, abs_tol=1e-12)
    drawn = plan.drawn()
    epochs = plan.epochs()
    for s in supplies:
        assert drawn[s.name] <= cap_tokens(s)
        assert epochs[s.name] <= s.max_epochs


def proportional_when_no_cap_binds(plan: BlendPlan, supplies: list[SourceSupply], phases: list[PhaseSpec]) -> bool:
    """True when no source is within a few tokens of its cap; then checks every phase is proportional to
    weight * tokens within one token."""
    by_name = {s.name: s for s in supplies}
    drawn = plan.drawn()
    if any(drawn[s.name] >= cap_tokens(s) - len(phases) for s in supplies if s.tokens):
        return False
    for plan_phase, spec in zip(plan.phases, phases):
        desire = {n: Fraction((spec.weights or {}).get(n, by_name[n].weight)) * by_name[n].tokens
                  for n in spec.sources}
        total = sum(desire.values())
        for n, got in plan_phase.allocations.items():
            assert abs(got - plan_phase.tokens * desire[n] / total) < 1
    return True


def test_random_specs_hold_the_invariants() -> None:
    rng = random.Random(20240909)
    solved = infeasible = proportional = binding = 0
    for case in range(300):
        supplies, phases, budget = random_spec(rng)
        phase_tokens = phase_token_counts([p.share for p in phases], budget)
        fillable = max_fill(supplies, phases, phase_tokens)
        try:
            plan = solve_blend(supplies, phases, budget)
        except InfeasibleBlend as err:
            infeasible += 1
            assert fillable < budget, f"case {case}: solver says infeasible but a plan of {budget} exists"
            assert err.shortfalls
            for sf in err.shortfalls:
                assert sf.needed == phase_tokens[[p.name for p in phases].index(sf.phase)]
                assert sf.short == sf.needed - sf.available > 0
                assert sf.exhausted
                assert f'phase "{sf.phase}" needs {sf.needed:,} tokens' in str(err)
            continue
        solved += 1
        assert fillable == budget, f"case {case}"
        check_invariants(plan, supplies, phases, budget)
        proportional += proportional_when_no_cap_binds(plan, supplies, phases)
        binding += any(plan.drawn()[s.name] == cap_tokens(s) for s in supplies if s.tokens)
        assert plan_as_tuple(solve_blend(supplies, phases, budget)) == plan_as_tuple(plan)
        shuffled_supplies = supplies[:]
        rng.shuffle(shuffled_supplies)
        shuffled_phases = [PhaseSpec(p.name, p.share, tuple(rng.sample(p.sources, len(p.sources))), p.weights)
                           for p in phases]
        again = solve_blend(shuffled_supplies, shuffled_phases, budget)
        assert plan_as_tuple(again) == plan_as_tuple(plan)
        assert again.to_json() == plan.to_json()
    # The generator exercises every branch: plans with and without binding caps, and infeasible specs.
    assert solved > 150 and infeasible > 30 and proportional > 30 and binding > 50, \
        (solved, infeasible, proportional, binding)


def test_no_cap_binding_is_pure_proportional() -> None:
    supplies = [SourceSupply("a", 1000, 2.0, 10), SourceSupply("b", 3000, 1.0, 10)]
    plan = solve_blend(supplies, [PhaseSpec("only", 1.0, ("a", "b"))], 2000)
    # desired shares 2*1000 : 1*3000 = 2 : 3
    assert plan.phases[0].allocations == {"a": 800, "b": 1200}
    assert plan.phases[0].weights() == {"a": 0.4, "b": 0.6}
    assert plan.epochs() == {"a": 0.8, "b": 0.4}  # weight 2: twice the epochs of a weight-1 source


def test_one_cap_binds_and_the_rest_goes_to_the_others() -> None:
    supplies = [SourceSupply("a", 1000, 1.0, 1), SourceSupply("b", 4000, 1.0, 10), SourceSupply("c", 5000, 1.0, 10)]
    plan = solve_blend(supplies, [PhaseSpec("only", 1.0, ("a", "b", "c"))], 20_000)
    # desired 2000 : 8000 : 10000; a is capped at 1000 and its other 1000 split 4 : 5 between b and c
    assert plan.phases[0].allocations == {"a": 1000, "b": 8444, "c": 10556}
    assert plan.epochs()["a"] == 1.0


def test_cap_shared_across_two_phases() -> None:
    supplies = [SourceSupply("a", 1000, 5.0, 2), SourceSupply("b", 10_000, 1.0, 10),
                SourceSupply("c", 10_000, 1.0, 10)]
    phases = [PhaseSpec("p1", 0.6, ("a", "b")), PhaseSpec("p2", 0.4, ("a", "c"))]
    plan = solve_blend(supplies, phases, 10_000)
    # a wants 1/3 of each phase: 2000 + 1333.3 = 3333.3 > its cap of 2000, so both scale by 0.6
    assert [p.allocations for p in plan.phases] == [{"a": 1200, "b": 4800}, {"a": 800, "c": 3200}]
    assert plan.epochs()["a"] == 2.0
    assert plan.phase_epochs("p1")["a"] == 1.2 and plan.phase_epochs("p2")["a"] == 0.8


def test_per_phase_weight_override() -> None:
    supplies = [SourceSupply("a", 1000, 1.0, 100), SourceSupply("b", 1000, 1.0, 100)]
    phases = [PhaseSpec("p1", 0.5, ("a", "b")), PhaseSpec("p2", 0.5, ("a", "b"), weights={"a": 4.0})]
    plan = solve_blend(supplies, phases, 10_000)
    assert plan.phases[0].allocations == {"a": 2500, "b": 2500}
    assert plan.phases[1].allocations == {"a": 4000, "b": 1000}  # b keeps its own weight of 1


def test_repair_feeds_a_phase_that_has_no_other_source() -> None:
    # Proportional scaling of "high" would leave p2 short; p1 can use "medium" instead.
    supplies = [SourceSupply("high", 1000, 1.0, 4), SourceSupply("medium", 100_000, 1.0, 1)]
    phases = [PhaseSpec("p1", 0.5, ("high", "medium")), PhaseSpec("p2", 0.5, ("high",))]
    plan = solve_blend(supplies, phases, 8000)
    assert plan.phases[1].allocations == {"high": 4000}
    assert plan.phases[0].allocations == {"high": 0, "medium": 4000}
    assert plan.phases[0].weights() == {"medium": 1.0}
    assert plan.epochs()["high"] == 4.0


def test_nemotron_cc_like_two_phase_blend() -> None:
    billion = 10**9
    supplies = [
        SourceSupply("crawl_medium", 4000 * billion, 1.0, 1.0),
        SourceSupply("crawl_medium_high", 1500 * billion, 1.5, 2.0),
        SourceSupply("crawl_high", 300 * billion, 3.0, 8.0),
        SourceSupply("synthetic", 1500 * billion, 2.0, 4.0),
        SourceSupply("math", 100 * billion, 3.0, 4.0),
    ]
    phases = [
        PhaseSpec("phase1", 0.6, ("crawl_medium", "crawl_medium_high", "crawl_high", "synthetic")),
        PhaseSpec("phase2", 0.4, ("crawl_high", "synthetic", "math")),
    ]
    budget = 15_000 * billion
    plan = solve_blend(supplies, phases, budget)
    check_invariants(plan, supplies, phases, budget)
    p1, p2 = plan.phases
    assert (p1.tokens, p2.tokens) == (9000 * billion, 6000 * billion)
    epochs = plan.epochs()
    # The high-quality sources run into their caps at this budget (crawl_high 8 epochs, 2.4T tokens); phase 2
    # has nothing else, so it gets the crawl_high that phase 1 would have taken (repair), and phase 1 refills
    # from the two crawl sources with room left, in proportion to weight * tokens (4000 : 1.5 * 1500).
    assert epochs["crawl_high"] == 8.0 and epochs["synthetic"] == 4.0 and epochs["math"] == 4.0
    assert p1.allocations["crawl_medium"] == 3968 * billion and p1.allocations["crawl_medium_high"] == 2232 * billion
    assert epochs["crawl_medium"] < 1.0 and epochs["crawl_medium_high"] < 2.0
    assert "math" not in p1.allocations
    # Phase 2 upweights high quality: crawl_high has a larger share there than in phase 1.
    assert p2.weights()["crawl_high"] > p1.weights()["crawl_high"]
    assert p2.allocations["math"] == 400 * billion
    doc = json.loads(json.dumps(plan.to_json()))
    assert doc["budget_tokens"] == budget
    assert doc["sources"]["crawl_high"]["tokens_drawn"] == 2400 * billion
    assert [ph["tokens"] for ph in doc["phases"]] == [9000 * billion, 6000 * billion]
    assert math.isclose(sum(s["weight"] for s in doc["phases"][1]["sources"].values()), 1.0)


def test_rounding_never_pushes_a_source_over_its_cap() -> None:
    # a's cap is 2.5 * 3 = 7.5 -> 7 tokens, split 3.5 + 3.5; both phases would round a up (remainder 0.5,
    # tie with b broken by name) but only the first can.
    supplies = [SourceSupply("a", 3, 1000.0, 2.5), SourceSupply("b", 1000, 1.0, 100)]
    phases = [PhaseSpec("p1", 0.5, ("a", "b")), PhaseSpec("p2", 0.5, ("a", "b"))]
    plan = solve_blend(supplies, phases, 20)
    check_invariants(plan, supplies, phases, 20)
    assert [p.allocations for p in plan.phases] == [{"a": 4, "b": 6}, {"a": 3, "b": 7}]


def test_infeasible_phase_names_shortfall_and_exhausted_sources() -> None:
    supplies = [SourceSupply("crawl_high", 400_000, 1.0, 8), SourceSupply("math", 250_000, 1.0, 4),
                SourceSupply("crawl_medium", 10_000_000, 1.0, 2)]
    phases = [PhaseSpec("phase1", 0.4, ("crawl_medium", "crawl_high")),
              PhaseSpec("phase2", 0.6, ("crawl_high", "math"))]
    with pytest.raises(InfeasibleBlend) as info:
        solve_blend(supplies, phases, 10_000_000)
    message = str(info.value)
    assert 'phase "phase2" needs 6,000,000 tokens but its sources can give 4,200,000' in message
    assert "short by 1,800,000" in message
    assert "crawl_high ran out at 8 epochs (3,200,000 tokens)" in message
    assert "math at 4 epochs (1,000,000 tokens)" in message
    assert "phase1" not in message
    [sf] = info.value.shortfalls
    assert (sf.phase, sf.needed, sf.available, sf.short, sf.exhausted) == \
        ("phase2", 6_000_000, 4_200_000, 1_800_000, ["crawl_high", "math"])
    assert isinstance(info.value, ValueError)


def test_infeasible_lists_every_phase_that_cannot_be_filled() -> None:
    supplies = [SourceSupply("a", 1000, 1.0, 2), SourceSupply("b", 1000, 1.0, 1), SourceSupply("c", 10**6, 1.0, 1)]
    phases = [PhaseSpec("p1", 0.25, ("a",)), PhaseSpec("p2", 0.25, ("a", "b")), PhaseSpec("p3", 0.5, ("c",))]
    with pytest.raises(InfeasibleBlend) as info:
        solve_blend(supplies, phases, 20_000)
    shortfalls = info.value.shortfalls
    assert [sf.phase for sf in shortfalls] == ["p1", "p2"]
    # a's 2 epochs and b's 1 epoch, all used (each phase's part rounded down)
    assert 3000 - len(shortfalls) < sum(sf.available for sf in shortfalls) <= 3000
    message = str(info.value)
    assert 'phase "p1" needs 5,000 tokens' in message and 'phase "p2" needs 5,000 tokens' in message
    assert "of them in this phase" in message  # a's cap is split between p1 and p2
    assert '"p3"' not in message


@pytest.mark.parametrize(("supplies", "phases", "budget", "expected"), [
    ([SourceSupply("a", 10, 1, 1)], [PhaseSpec("p", 1.0, ("b",))], 5, "unknown source(s) b"),
    ([SourceSupply("a", 10, 1, 1), SourceSupply("a", 5, 1, 1)], [PhaseSpec("p", 1.0, ("a",))], 5,
     "duplicate source name 'a'"),
    ([SourceSupply("a", 10, 1, 1)], [PhaseSpec("p", 0.5, ("a",)), PhaseSpec("p", 0.5, ("a",))], 5,
     "duplicate phase name 'p'"),
    ([SourceSupply("a", 10, 1, 1)], [PhaseSpec("p", 0.5, ("a",)), PhaseSpec("q", 0.4, ("a",))], 5,
     "shares must sum to 1"),
    ([SourceSupply("a", 10, 1, 1)], [PhaseSpec("p", 1.0, ("a",))], 0, "budget_tokens must be a positive int"),
    ([SourceSupply("a", 10, 0.0, 1)], [PhaseSpec("p", 1.0, ("a",))], 5, "weight must be > 0"),
    ([SourceSupply("a", 10, 1, -1)], [PhaseSpec("p", 1.0, ("a",))], 5, "max_epochs must be > 0"),
    ([SourceSupply("a", -1, 1, 1)], [PhaseSpec("p", 1.0, ("a",))], 5, "tokens must be an int >= 0"),
    ([SourceSupply("a", 0, 1, 1), SourceSupply("b", 10, 1, 1)],
     [PhaseSpec("p", 0.5, ("a",)), PhaseSpec("q", 0.5, ("a", "b"))], 5, "phase 'p': its sources (a) have no tokens"),
    ([SourceSupply("a", 10, 1, 1)], [PhaseSpec("p", 1.0, ("a",), weights={"b": 2.0})], 5,
     "not one of this phase's sources"),
    ([SourceSupply("a", 10, 1, 1)], [PhaseSpec("p", 1.0, ("a", "a"))], 5, "listed twice"),
    ([SourceSupply("a", 10, 1, 1)], [PhaseSpec("p", 1.5, ("a",))], 5, "share must be in (0, 1]"),
    ([SourceSupply("a", 10**6, 1, 1)], [PhaseSpec("p", 0.999, ("a",)), PhaseSpec("q", 0.001, ("a",))], 100,
     "phase 'q' gets 0 tokens"),
])
def test_invalid_specs_are_rejected_clearly(supplies, phases, budget, expected) -> None:
    with pytest.raises(ValueError) as info:
        solve_blend(supplies, phases, budget)
    assert not isinstance(info.value, InfeasibleBlend)
    assert expected in str(info.value)


def test_phase_token_counts_use_largest_remainder() -> None:
    assert phase_token_counts([1 / 3, 1 / 3, 1 / 3], 10) == [4, 3, 3]
    assert phase_token_counts([0.6, 0.4], 15 * 10**12) == [9 * 10**12, 6 * 10**12]
    assert phase_token_counts([0.25, 0.75], 7) == [2, 5]  # 1.75 and 5.25: the larger remainder wins
