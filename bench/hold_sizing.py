"""Hold sizing: what a hold without max_tokens should reserve, measured on a trace.

A trace of chat calls to gpt-4o-mini (its LiteLLM prices and maximum output, 16,384 tokens)
without ``max_tokens``, run against one budget with a fixed number of calls in flight: each call
holds, then settles with its real cost (charged in full, even above the hold). Output and prompt
lengths are drawn from lognormal distributions whose means are LMSYS-Chat-1M's published
averages (Zheng et al., "LMSYS-Chat-1M: A Large-Scale Real-World LLM Conversation Dataset", ICLR
2024, arXiv:2309.11998, Table 1: 69.5 tokens per prompt, 214.5 tokens per response); the shape
(lognormal, sigma 1.0, a long right tail) is this bench's assumption, not the paper's. The
sizings: **prompt only** (what a hold by messages did before hold sizing), **worst case** (the
model's maximum output: what a hold reserves without history), **learned** (the service's
histogram and percentile, learning from the trace's own settles as it runs, 20 settles before it
is used), and **capped** (worst case, with a per-request ``max_hold``). The arithmetic is the
service's (Decimal prices, the domain's buckets and percentile); the holds are simulated in
process, since what is measured is admission, not DynamoDB.

- **overshoot**: spend past the cap at the end, in % of the cap (a settle is never refused, so
  a hold smaller than the call lets spend pass the cap);
- **blocked headroom**: refusals of calls whose real cost still fitted under the cap (counting
  what the calls in flight really cost), and the share of the cap left unspent at the end.
"""

from __future__ import annotations

import math
import random
from collections import deque
from decimal import Decimal

from bench.common import BenchRuntime, Section, Table
from budget_service.domain import hold_sizing
from budget_service.pricing.prices import cost_of, default_table
from budget_service.schemas.usage import TokenUsage

MODEL = "gpt-4o-mini"
PROMPT_MEAN = 69.5  # LMSYS-Chat-1M, Table 1
OUTPUT_MEAN = 214.5  # LMSYS-Chat-1M, Table 1
SIGMA = 1.0  # assumed shape
SEED = 20240101


def _lognormal(rng: random.Random, mean: float) -> int:
    mu = math.log(mean) - SIGMA**2 / 2  # so that the distribution's mean is `mean`
    return max(1, round(rng.lognormvariate(mu, SIGMA)))


def trace(calls: int, seed: int = SEED) -> list[tuple[int, int]]:
    """(prompt tokens, output tokens) of `calls` calls."""
    rng = random.Random(seed)
    return [(_lognormal(rng, PROMPT_MEAN), _lognormal(rng, OUTPUT_MEAN)) for _ in range(calls)]


def simulate(
    calls: list[tuple[int, int]], cap: Decimal, in_flight: int, sizing: str, max_hold: Decimal | None
):
    """Run the trace against one budget of `cap` USD; the figures of one row."""
    price = default_table().price(MODEL)
    max_output = price.max_output or hold_sizing.DEFAULT_MAX_OUTPUT_TOKENS

    def cost(prompt: int, output: int) -> Decimal:
        return cost_of(price, TokenUsage(prompt_tokens=prompt, completion_tokens=output)).total

    spend = Decimal(0)
    held = Decimal(0)
    counts: dict[int, int] = {}
    flight: deque[tuple[Decimal, Decimal, int]] = deque()  # (held, real cost, output tokens)
    admitted = refused = blocked = 0

    def settle_oldest() -> None:
        nonlocal spend, held
        amount, real, output = flight.popleft()
        held -= amount
        spend += real
        bucket = hold_sizing.bucket_of(output)
        counts[bucket] = counts.get(bucket, 0) + 1

    for prompt, output in calls:
        if len(flight) >= in_flight:
            settle_oldest()
        if sizing == "prompt only":
            tokens = 0
        elif sizing == "learned" and sum(counts.values()) >= hold_sizing.DEFAULT_MIN_SAMPLES:
            learned = hold_sizing.percentile_tokens(counts, hold_sizing.DEFAULT_PERCENTILE) or max_output
            tokens = min(learned, max_output)
        else:
            tokens = max_output
        amount = cost(prompt, tokens)
        if max_hold is not None:
            amount = min(amount, max_hold)
        real = cost(prompt, output)
        if cap - spend - held >= amount:
            held += amount
            flight.append((amount, real, output))
            admitted += 1
        else:
            refused += 1
            if spend + sum(r for _, r, _ in flight) + real <= cap:
                blocked += 1
    while flight:
        settle_oldest()
    return {
        "admitted": admitted,
        "refused": refused,
        "blocked": blocked,
        "overshoot_pct": float(max(spend - cap, Decimal(0)) / cap * 100),
        "unspent_pct": float(max(cap - spend, Decimal(0)) / cap * 100),
    }


def run(rt: BenchRuntime | None = None, *, quick: bool = False) -> Section:
    """The section: one table per number of calls in flight (`rt` unused: no DynamoDB)."""
    n = 400 if quick else 6000
    section = Section(
        "hold_sizing",
        "10. Hold sizing: overshoot against blocked headroom",
        intro=__doc__.split("\n\n", 1)[1].strip(),
    )
    calls = trace(n)
    outputs = sorted(o for _, o in calls)
    mean_cost = sum(
        cost_of(default_table().price(MODEL), TokenUsage(prompt_tokens=p, completion_tokens=o)).total
        for p, o in calls
    ) / len(calls)
    # A budget of about 80 % of the trace's spend, so it runs out before the trace does.
    cap = (mean_cost * len(calls) * Decimal("0.8")).quantize(Decimal("0.0001"))
    p99 = outputs[int(len(outputs) * 0.99)]
    cap_per_request = cost_of(
        default_table().price(MODEL), TokenUsage(prompt_tokens=round(PROMPT_MEAN), completion_tokens=4 * p99)
    ).total.quantize(Decimal("0.000001"))
    section.notes.append(
        f"{n} calls; output tokens: median {outputs[len(outputs) // 2]}, p95"
        f" {outputs[int(len(outputs) * 0.95)]}, p99 {p99}, max {outputs[-1]}; budget ${cap}"
        f" (80 % of the trace's spend); capped: max_hold ${cap_per_request} (4x the p99 call)."
    )
    for in_flight in (1, 8, 32) if not quick else (8,):
        table = Table(
            [
                "sizing",
                "admitted",
                "refused",
                "blocked headroom (refusals that fitted)",
                "overshoot",
                "unspent",
            ],
            title=f"{in_flight} call(s) in flight",
        )
        section.tables.append(table)
        for sizing, max_hold in (
            ("prompt only", None),
            ("worst case", None),
            ("learned", None),
            ("capped", cap_per_request),
        ):
            row = simulate(calls, cap, in_flight, "worst case" if sizing == "capped" else sizing, max_hold)
            section.data[f"{in_flight}/{sizing}"] = row
            table.add(
                sizing,
                row["admitted"],
                row["refused"],
                row["blocked"],
                f"{row['overshoot_pct']:.2f} %",
                f"{row['unspent_pct']:.2f} %",
            )
    return section
