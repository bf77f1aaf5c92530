"""7. What one million charged calls cost on AWS, beside running LiteLLM Proxy's budget path.

A charged call is ``POST /projects/{p}/users/{u}/cost`` (the hot path), with and without an
Idempotency-Key. Its price is the sum of:

* API Gateway (REST API): one request;
* Lambda (arm64): one request, plus duration x memory in GB-seconds. Duration = the handler's
  measured time outside DynamoDB (section 6), scaled to the function's CPU share (Lambda gives a
  function CPU in proportion to memory, one full vCPU at 1,769 MB), plus the DynamoDB request's
  latency on AWS (an assumption, below: moto's time is not DynamoDB's), rounded up to Lambda's
  1 ms billing granularity;
* DynamoDB on-demand: the write and read request units the call consumes (section 5's count).

The authorizer's answer is cached per key by API Gateway (AuthCacheTtlSeconds, 300 s by
default), so it adds about one Lambda invocation and one 0.5-unit read per key per 5 minutes:
nothing per million calls at any real rate.

Prices are AWS's published list prices for us-east-1, as of PRICES_AS_OF; check them at the
pages named in PRICE_SOURCES before relying on them. LiteLLM Proxy's figure is a fixed monthly
bill for the components its production documentation calls for, under the assumptions written
in LITELLM_ASSUMPTIONS, divided by the monthly volume.
"""

from __future__ import annotations

import math

from bench.common import Section, Table

PRICES_AS_OF = "2025-06"
PRICE_SOURCES = {
    "API Gateway": "https://aws.amazon.com/api-gateway/pricing/",
    "Lambda": "https://aws.amazon.com/lambda/pricing/",
    "DynamoDB": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    "Fargate": "https://aws.amazon.com/fargate/pricing/",
    "RDS": "https://aws.amazon.com/rds/postgresql/pricing/",
    "ElastiCache": "https://aws.amazon.com/elasticache/pricing/",
    "ALB": "https://aws.amazon.com/elasticloadbalancing/pricing/",
}
# us-east-1 list prices (USD).
API_GATEWAY_REST_PER_MILLION = 3.50  # first 333 million requests a month
API_GATEWAY_HTTP_PER_MILLION = 1.00  # HTTP APIs, first 300 million (for comparison)
LAMBDA_ARM_GB_SECOND = 0.0000133334  # arm64, first 7.5 billion GB-s a month
LAMBDA_REQUEST_PER_MILLION = 0.20
DYNAMODB_WRU_PER_MILLION = 0.625  # on-demand, after the November 2024 price cut
DYNAMODB_RRU_PER_MILLION = 0.125
FARGATE_ARM_VCPU_HOUR = 0.03238
FARGATE_ARM_GB_HOUR = 0.00356
RDS_POSTGRES_T4G_MEDIUM_HOUR = 0.065  # Single-AZ, on demand
RDS_GP3_GB_MONTH = 0.115
ELASTICACHE_T4G_SMALL_HOUR = 0.032
ALB_HOUR = 0.0225
ALB_LCU_HOUR = 0.008
HOURS_PER_MONTH = 730

# Assumptions (write down what a user must check).
DYNAMODB_LATENCY_S = {"UpdateItem": 0.006, "TransactWriteItems": 0.012}  # in-region, typical
FULL_VCPU_MB = 1769  # Lambda: one vCPU's worth of CPU at this memory size
LITELLM_ASSUMPTIONS = {
    "proxy tasks": 2,  # two for availability (one per AZ), each below
    "vCPU per task": 4,
    "GB per task": 8,  # LiteLLM's production guide recommends 4 vCPU / 8 GB machines
    "Postgres": "RDS db.t4g.medium Single-AZ, 20 GB gp3",
    "Redis": "ElastiCache cache.t4g.small, one node",
    "load balancer": "one ALB, 1 LCU on average",
}
VOLUMES = (1, 10, 100, 1000)  # million charged calls a month


def lambda_seconds(outside_s: float, dynamodb_s: float, memory_mb: int) -> float:
    """Billed duration: CPU work scaled to the memory's CPU share, plus the DynamoDB wait, 1 ms steps."""
    cpu_share = min(1.0, memory_mb / FULL_VCPU_MB)
    return math.ceil((outside_s / cpu_share + dynamodb_s) * 1000) / 1000


def per_million(memory_mb: int, outside_s: float, operation: str, wcu: float, rcu: float) -> dict:
    seconds = lambda_seconds(outside_s, DYNAMODB_LATENCY_S[operation], memory_mb)
    parts = {
        "API Gateway (REST)": API_GATEWAY_REST_PER_MILLION,
        "Lambda requests": LAMBDA_REQUEST_PER_MILLION,
        "Lambda duration": seconds * memory_mb / 1024 * LAMBDA_ARM_GB_SECOND * 1e6,
        "DynamoDB writes": wcu * DYNAMODB_WRU_PER_MILLION,
        "DynamoDB reads": rcu * DYNAMODB_RRU_PER_MILLION,
    }
    return {"billed_seconds": seconds, "parts": parts, "total": sum(parts.values())}


def litellm_monthly() -> dict:
    a = LITELLM_ASSUMPTIONS
    parts = {
        "proxy containers (Fargate arm64)": a["proxy tasks"]
        * HOURS_PER_MONTH
        * (a["vCPU per task"] * FARGATE_ARM_VCPU_HOUR + a["GB per task"] * FARGATE_ARM_GB_HOUR),
        "Postgres (RDS)": HOURS_PER_MONTH * RDS_POSTGRES_T4G_MEDIUM_HOUR + 20 * RDS_GP3_GB_MONTH,
        "Redis (ElastiCache)": HOURS_PER_MONTH * ELASTICACHE_T4G_SMALL_HOUR,
        "load balancer (ALB)": HOURS_PER_MONTH * (ALB_HOUR + ALB_LCU_HOUR),
    }
    return {"parts": parts, "total": sum(parts.values())}


def run(sections: dict, *, quick: bool = False) -> Section:
    from localdev import template

    memory = int(template.function_setting("UpdateCostFunction", "MemorySize", 128))
    latency = sections.get("latency")
    ops = sections.get("dynamodb_ops")
    hot = {k: v for k, v in (latency.data if latency else {}).items() if "outside_p50_s" in v}
    cost_key = next((v for k, v in hot.items() if k.endswith("/cost")), None)
    outside_s = cost_key["outside_p50_s"] if cost_key else 0.002
    measured = "measured (section 6)" if cost_key else "assumed (run with the latency section to measure)"
    units = {
        "with Idempotency-Key": ("TransactWriteItems", ops.data["cost_key"]["wcu"] if ops else 6, 0),
        "without a key": ("TransactWriteItems", ops.data["cost"]["wcu"] if ops else 4, 0),
    }
    section = Section(
        "cost_model",
        "7. Cost model: one million charged calls on AWS, beside LiteLLM Proxy",
        intro=(
            f"AWS list prices for us-east-1 **as of {PRICES_AS_OF}** (check: "
            + ", ".join(f"[{name}]({url})" for name, url in PRICE_SOURCES.items())
            + "). A charged call is `POST …/cost`: API Gateway REST"
            f" ${API_GATEWAY_REST_PER_MILLION:.2f}/M requests; Lambda arm64 ${LAMBDA_REQUEST_PER_MILLION:.2f}/M"
            f" requests + ${LAMBDA_ARM_GB_SECOND:.10f}/GB-s at the template's {memory} MB, for the"
            f" handler's time outside DynamoDB, {measured}: {outside_s * 1000:.2f} ms on one core of"
            f" this machine, scaled by {FULL_VCPU_MB}/{memory} to the CPU share {memory} MB gets,"
            " plus the DynamoDB request's in-region latency (assumed: "
            + ", ".join(f"{op} {s * 1000:.0f} ms" for op, s in DYNAMODB_LATENCY_S.items())
            + f"); DynamoDB on-demand ${DYNAMODB_WRU_PER_MILLION}/M write request units and"
            f" ${DYNAMODB_RRU_PER_MILLION}/M read request units, counted per call in section 5."
        ),
    )
    table = Table(
        [
            "charged call",
            "DynamoDB",
            "billed Lambda duration",
            "API Gateway",
            "Lambda",
            "DynamoDB",
            "total per million calls",
        ]
    )
    section.tables.append(table)
    for label, (operation, wcu, rcu) in units.items():
        figure = per_million(memory, outside_s, operation, wcu, rcu)
        p = figure["parts"]
        table.add(
            f"POST …/cost, {label}",
            f"1 {operation}, {wcu:g} WRU",
            f"{figure['billed_seconds'] * 1000:.0f} ms",
            f"${p['API Gateway (REST)']:.2f}",
            f"${p['Lambda requests'] + p['Lambda duration']:.2f}",
            f"${p['DynamoDB writes'] + p['DynamoDB reads']:.2f}",
            f"**${figure['total']:.2f}**",
        )
        section.data[label] = {"operation": operation, "wcu": wcu, "rcu": rcu, **figure}
    litellm = litellm_monthly()
    section.data["litellm_proxy_monthly"] = litellm
    section.data["assumptions"] = {
        "dynamodb_latency_s": DYNAMODB_LATENCY_S,
        "litellm": LITELLM_ASSUMPTIONS,
        "outside_s": outside_s,
        "memory_mb": memory,
        "prices_as_of": PRICES_AS_OF,
    }
    fixed = Table(
        ["LiteLLM Proxy component (assumed)", "sizing", "per month"],
        title="LiteLLM Proxy's budget path: what runs whatever the volume",
    )
    sizing = {
        "proxy containers (Fargate arm64)": f"{LITELLM_ASSUMPTIONS['proxy tasks']} tasks ×"
        f" {LITELLM_ASSUMPTIONS['vCPU per task']} vCPU / {LITELLM_ASSUMPTIONS['GB per task']} GB",
        "Postgres (RDS)": LITELLM_ASSUMPTIONS["Postgres"],
        "Redis (ElastiCache)": LITELLM_ASSUMPTIONS["Redis"],
        "load balancer (ALB)": LITELLM_ASSUMPTIONS["load balancer"],
    }
    for name, monthly in litellm["parts"].items():
        fixed.add(name, sizing[name], f"${monthly:,.0f}")
    fixed.add("**total**", "all of the above", f"**${litellm['total']:,.0f}**")
    section.tables.append(fixed)
    compare = Table(
        [
            "charged calls a month",
            "this service (with Idempotency-Key)",
            "this service (no key)",
            "LiteLLM Proxy stack",
            "per million: service / LiteLLM",
        ],
        title="Monthly bill by volume",
    )
    with_key, without = section.data["with Idempotency-Key"]["total"], section.data["without a key"]["total"]
    for millions in VOLUMES:
        compare.add(
            f"{millions:,} million",
            f"${with_key * millions:,.2f}",
            f"${without * millions:,.2f}",
            f"${litellm['total']:,.0f}",
            f"${with_key:.2f} / ${litellm['total'] / millions:,.2f}",
        )
    section.tables.append(compare)
    section.notes += [
        "The LiteLLM figure is the cost of running the stack its budget enforcement needs (the"
        " proxy, which also forwards the LLM calls themselves, its Postgres spend log and Redis"
        " for limits shared across instances); it does not grow with calls until the fleet must."
        " Assumed: two tasks carry the volumes shown (about 380 calls/s at 1,000 million a month);"
        " more tasks cost proportionally more. Data transfer, backups and NAT are left out of"
        " both sides.",
        f"API Gateway is most of the service's price; an HTTP API (${API_GATEWAY_HTTP_PER_MILLION:.2f}/M)"
        " would cut about $2.50 per million; the template uses a REST API (per-method stage"
        " throttling, gateway responses in the API's error shape).",
        "Not in the total: CloudWatch Logs ($0.50/GB ingested: a few hundred bytes per call from"
        " Lambda's START/END/REPORT lines, ~$0.15 per million), X-Ray (traces recorded at $5 per"
        " million after the free tier; the default sampling rule records 1 per second plus 5%),"
        " and since August 2025 Lambda's billed INIT phase on cold starts (a few hundred ms per new"
        " environment; with SnapStart, cache and restore charges instead).",
    ]
    return section
