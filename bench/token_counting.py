"""4. Token counting: the service's counter (budget_service.pricing.tokens) against litellm.token_counter.

Throughput on the same texts and message lists (tokens per second, median over five timed
batches of at least 0.1 s each), with both counts shown so a difference in work would show; and
the first, encoding-loading call in a fresh process (median over five processes), after the
module's import.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

from bench.common import LAYER_DIR, ROOT, Section, Stat, Table, ratio

BATCHES = 5
MIN_BATCH_S = 0.1
FRESH_PROCESSES = 5

_WORDS = (
    "budget spend model token user project period reset monthly daily cost usage prompt"
    " completion cache request limit remaining exceeded team report quarter invoice api key"
    " latency region table index shard write read the a of to and in for with on by is are"
    " was be this that it from at as an or not which will can each per every one more than"
).split()
_MULTILINGUAL = [
    "预算已用完，请联系管理员提高本月的限额。",
    "Бюджет на этот месяц почти исчерпан; новые запросы будут отклонены.",
    "تم تجاوز الميزانية الشهرية لهذا المستخدم.",
    "今月の予算の残りは 3.50 ドルです。",
    "Le budget mensuel est presque épuisé — réessayez demain. 🚀✨",
    "예산 한도를 초과했습니다.",
]


def _prose(chars: int, seed: int) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 18)))
        sentence = sentence[0].upper() + sentence[1:] + rng.choice([".", ".", "?", "!"])
        words.append(sentence)
        size += len(sentence) + 1
    return " ".join(words)[:chars]


def _code(chars: int) -> str:
    blocks, i = [], 0
    while sum(len(b) for b in blocks) < chars:
        blocks.append(
            f"def update_cost_{i}(store, project: str, user: str, cost: Decimal) -> dict:\n"
            f'    """Add `cost` to user #{i}\'s spend; one UpdateItem."""\n'
            f"    item = store.add(project, user, model='gpt-4o-mini', cost=cost * {i + 1})\n"
            f"    if item['current_cost'] > item.get('total_budget', 0):\n"
            f"        raise BudgetExceeded(f'{{user}} is over by {{item[\"current_cost\"]}}')\n"
            f"    return {{'user': user, 'remaining': item['total_budget'] - item['current_cost']}}\n\n"
        )
        i += 1
    return "".join(blocks)[:chars]


def _multilingual(chars: int) -> str:
    text, i = "", 0
    while len(text) < chars:
        text += _MULTILINGUAL[i % len(_MULTILINGUAL)] + " "
        i += 1
    return text[:chars]


def _chat(turns: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    messages = [{"role": "system", "content": "You are a concise assistant for a finance team."}]
    for t in range(turns):
        role = "user" if t % 2 == 0 else "assistant"
        messages.append({"role": role, "content": _prose(rng.randint(80, 900), seed * 100 + t)})
    messages[1]["name"] = "alice"
    return messages


def cases(quick: bool) -> list[dict]:
    """(label, model, kind, payload): text cases and message-list cases."""
    all_cases = [
        {"label": "short English text (60 chars)", "model": "gpt-4o", "text": _prose(60, 1)},
        {"label": "English text (2 KB)", "model": "gpt-4o", "text": _prose(2_000, 2)},
        {"label": "English text (64 KB)", "model": "gpt-4o", "text": _prose(64_000, 3)},
        {"label": "Python-like code (8 KB)", "model": "gpt-4o", "text": _code(8_000)},
        {"label": "multilingual + emoji (4 KB)", "model": "gpt-4o", "text": _multilingual(4_000)},
        {"label": "English text (64 KB), cl100k", "model": "gpt-3.5-turbo", "text": _prose(64_000, 3)},
        {"label": "chat, 3 messages", "model": "gpt-4o", "messages": _chat(2, 4)},
        {"label": "chat, 21 messages", "model": "gpt-4o", "messages": _chat(20, 5)},
        {"label": "chat, 21 messages, cl100k", "model": "gpt-4", "messages": _chat(20, 5)},
    ]
    return all_cases[:1] + all_cases[6:7] if quick else all_cases


def _throughput(count, batches: int) -> tuple[int, Stat]:
    tokens = count()

    def batch(iterations: int) -> float:
        start = time.perf_counter()
        for _ in range(iterations):
            count()
        return time.perf_counter() - start

    iterations = 1
    while (elapsed := batch(iterations)) < MIN_BATCH_S:  # calibrate: a batch of at least MIN_BATCH_S
        iterations = max(iterations * 2, int(iterations * MIN_BATCH_S * 1.2 / max(elapsed, 1e-9)))
    rates = [tokens * iterations / elapsed]
    rates += [tokens * iterations / batch(iterations) for _ in range(batches - 1)]
    return tokens, Stat.of(rates)


def _fresh_script(load: str, first: str, second: str) -> str:
    """A fresh process's timings: `load` (the import), `first` and `second` (two counts)."""
    return (
        "import time\n"
        "t0 = time.perf_counter()\n"
        f"{load}\n"
        "t1 = time.perf_counter()\n"
        f"n = {first}\n"
        "t2 = time.perf_counter()\n"
        f"m = {second}\n"
        "t3 = time.perf_counter()\n"
        "print('BENCH-RESULT', {'import_s': t1 - t0, 'first_s': t2 - t1, 'second_s': t3 - t2, 'tokens': n})\n"
    )


_SERVICE_FIRST = "tokens.count_text('How much of my budget is left this month?', 'gpt-4o')"
_SERVICE_SECOND = "tokens.count_messages([{'role': 'user', 'content': 'hi'}], 'gpt-4o')"
_FRESH = {
    "service": _fresh_script("from budget_service.pricing import tokens", _SERVICE_FIRST, _SERVICE_SECOND),
    "litellm": _fresh_script(
        "import litellm",
        "litellm.token_counter(model='gpt-4o', text='How much of my budget is left this month?')",
        "litellm.token_counter(model='gpt-4o', messages=[{'role': 'user', 'content': 'hi'}])",
    ),
}


def fresh_first_call(who: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "PYTHONPATH")}
    env.update(PYTHONPATH=str(LAYER_DIR), LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH[who]], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"fresh {who} token count failed:\n{proc.stdout[-1500:]}\n{proc.stderr[-2500:]}")
    import ast

    return ast.literal_eval(lines[-1][len("BENCH-RESULT ") :])


def run(*, quick: bool = False) -> Section:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    from budget_service.pricing import tokens

    for name in tokens.ENCODINGS:  # steady state: count_text uses tiktoken once it is loaded
        tokens.get_encoding(name)
    batches = 2 if quick else BATCHES
    section = Section(
        "tokens",
        "4. Token counting: budget_service.pricing.tokens vs litellm.token_counter",
        intro=(
            "Throughput on the same inputs in this process, tiktoken's encodings already loaded (as"
            " in a warm container): tokens per"
            f" second, median (min–max) of {batches} timed batches of ≥{MIN_BATCH_S:.1f} s."
            " The floor is tiktoken's own `encode` of the same strings (the whole text, or each"
            " string of each message) with nothing around it; service/tiktoken and"
            " litellm/tiktoken are throughput ratios to it (1.00 = the physical floor of counting)."
            " Texts go to `tokens.count_text` and `litellm.token_counter(model, text=...)`;"
            " message lists to `tokens.count_messages` and `litellm.token_counter(model, messages=...)`."
            " Texts are generated deterministically (bench/token_counting.py)."
        ),
    )
    speed = Table(
        [
            "input",
            "model",
            "tokens (service)",
            "tokens (litellm)",
            "tiktoken encode tokens/s",
            "service tokens/s",
            "service/tiktoken",
            "litellm tokens/s",
            "litellm/tiktoken",
            "service/litellm",
        ]
    )
    section.tables.append(speed)
    for case in cases(quick):
        model = case["model"]
        if "text" in case:
            text = case["text"]
            ours = lambda text=text, model=model: tokens.count_text(text, model)  # noqa: E731
            theirs = lambda text=text, model=model: litellm.token_counter(model=model, text=text)  # noqa: E731
        else:
            messages = case["messages"]
            ours = lambda m=messages, model=model: tokens.count_messages(m, model)  # noqa: E731
            theirs = lambda m=messages, model=model: litellm.token_counter(model=model, messages=m)  # noqa: E731
        n_ours, s_ours = _throughput(ours, batches)
        n_theirs, s_theirs = _throughput(theirs, batches)
        # The floor: tiktoken's own encode of the same strings (the whole text; each string of
        # each message), nothing around it. Its rate is counted in the service's tokens for the
        # same input, so the rates compare times.
        encoding = tokens.get_encoding(tokens.encoding_name_for(model))
        strings = (
            [case["text"]]
            if "text" in case
            else [v for m in case["messages"] for v in m.values() if isinstance(v, str)]
        )
        floor = lambda strings=strings, n=n_ours, enc=encoding: (  # noqa: E731
            [enc.encode(x, disallowed_special=()) for x in strings],
            n,
        )[1]
        _, s_floor = _throughput(floor, batches)
        speed.add(
            case["label"],
            model,
            f"{n_ours:,}",
            f"{n_theirs:,}",
            s_floor.fmt("M/s", 1e-6, 2),
            s_ours.fmt("M/s", 1e-6, 2),
            f"**{s_ours.median / s_floor.median:.2f}**",
            s_theirs.fmt("M/s", 1e-6, 2),
            f"{s_theirs.median / s_floor.median:.2f}",
            ratio(s_ours.median, s_theirs.median),
        )
        section.data[case["label"]] = {
            "model": model,
            "tokens_service": n_ours,
            "tokens_litellm": n_theirs,
            "service_tokens_per_s": s_ours.as_dict(),
            "litellm_tokens_per_s": s_theirs.as_dict(),
            "tiktoken_tokens_per_s": s_floor.as_dict(),
            "service_over_tiktoken": s_ours.median / s_floor.median,
            "litellm_over_tiktoken": s_theirs.median / s_floor.median,
        }

    processes = 1 if quick else FRESH_PROCESSES
    first = Table(
        ["counter", "import", "first call (o200k_base)", "second call (a message list)", "processes"],
        title=f"First call in a fresh process (median (min–max) of {processes})",
    )
    section.tables.append(first)
    for who, label, module in (
        (
            "service",
            "budget_service.pricing.tokens (loads tiktoken)",
            "`from budget_service.pricing import tokens`",
        ),
        ("litellm", "litellm.token_counter (loads tiktoken)", "`import litellm`"),
    ):
        runs = [fresh_first_call(who) for _ in range(processes)]
        stats = {k: Stat.of(r[k] for r in runs) for k in ("import_s", "first_s", "second_s")}
        first.add(
            label,
            f"{stats['import_s'].fmt()} ({module})",
            stats["first_s"].fmt(),
            stats["second_s"].fmt(digits=2),
            processes,
        )
        section.data[f"fresh_{who}"] = {k: v.as_dict() for k, v in stats.items()}
    section.notes += [
        "Warm, both count with tiktoken underneath; the difference is the work around it (litellm's"
        " token_counter resolves the model and tokenizer on every call). Cold, both first load"
        " tiktoken's encoding (it parses and builds its tables); deployed, the cost and hold"
        " functions load theirs before the SnapStart snapshot, so no request pays it.",
        f"Counts agree on every input: {_agree(section.data)}.",
    ]
    return section


def _agree(data: dict) -> str:
    mismatched = [
        k for k, v in data.items() if "tokens_service" in v and v["tokens_service"] != v["tokens_litellm"]
    ]
    return "yes" if not mismatched else "no — differs on " + ", ".join(mismatched)
