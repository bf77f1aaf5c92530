"""Instructions executed by a cold start without SnapStart, beside the reference's: the
load-independent view of section 3 (``python -m bench.instructions [FUNCTION_ID,...]``; needs
valgrind on PATH).

Whole-process times on a shared 2-core machine move by ±0.1–0.2× between identical runs (section 3
of bench/RESULTS.md, README "Cold starts"). Instruction counts do not: each process below runs once
under valgrind's callgrind (about 50× slower than native) with a fixed PYTHONHASHSEED, and the
count of instructions it executed is compared with the reference's. The processes are section
3's own: the function (tracing off) and the reference (bench/reference: the design's libraries,
boto3 and its client, Powertools' validating resolver, pydantic, replaying the function's recorded
DynamoDB requests), against the same embedded DynamoDB. Instructions are not time (a cache miss
costs more than an add), so these ratios are a second opinion on section 3, not a replacement:
they answer whether the service's own code, not the machine's load, is what a cold start over
the reference costs.

Usage: ``python -m bench.instructions [FunctionId[,FunctionId...] ...]`` (every function of
template.yaml when none is named). Like section 3, it compiles the layer's, the functions' and the
reference handlers' bytecode first. Not part of ``make bench`` (11 functions × 2 processes under
valgrind is several minutes more) nor of ``make test``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

from bench import cold_start
from bench.common import ROOT, BenchRuntime, Table

_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(command: list[str], env: dict[str, str]) -> int:
    """Instructions the process executed (callgrind's ``Collected`` total). Raises RuntimeError if
    the run failed or printed no BENCH-RESULT line."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        env={**env, "PYTHONHASHSEED": "0"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    found = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or not found or "BENCH-RESULT " not in proc.stdout:
        raise RuntimeError(
            f"{command[2:6]} under valgrind failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    return int(found.group(1))


def run(rt: BenchRuntime, functions: list[str]) -> Table:
    """One row per function: instructions of the reference and of the function, and the ratio."""
    import compileall

    from localdev import template

    table_name = cold_start.prepare(rt)
    for directory in (template.LAYER_DIR, ROOT / "functions", cold_start.REFERENCE_DIR):
        compileall.compile_dir(str(directory), quiet=1)
    table = Table(["function", "reference (design libraries)", "function (tracing off)", "ratio"])
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        for function_id in functions:
            calls = os.path.join(tmp, f"{function_id}.json")
            env = cold_start.child_env(rt, function_id, table_name)
            # The recording run writes the requests the reference replays (its count is not used).
            cold_start.run_child(rt, function_id, table_name, extra_env={"BENCH_RECORD_CALLS": calls})
            reference_env = {**env, "BENCH_REFERENCE_CALLS": calls}
            reference = instructions(
                cold_start.child_command(function_id, reference_dir=cold_start.REFERENCE_DIR), reference_env
            )
            function = instructions(cold_start.child_command(function_id), env)
            table.add(
                function_id,
                f"{reference / 1e6:,.0f} M",
                f"{function / 1e6:,.0f} M",
                f"**{function / reference:.2f}×**",
            )
            print(f"[instructions] {function_id} done", file=sys.stderr, flush=True)
    return table


def main(argv: list[str]) -> int:
    from localdev import template

    if shutil.which("valgrind") is None:
        print("valgrind is not on PATH (Debian/Ubuntu: apt-get install valgrind)", file=sys.stderr)
        return 2
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    known = list(template.functions())
    names = [name.strip() for arg in argv for name in arg.split(",") if name.strip()]
    functions = names or known
    unknown = sorted(set(functions) - set(known))
    if unknown:
        print(
            f"not functions of template.yaml: {', '.join(unknown)} (choose from: {', '.join(known)})",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    with BenchRuntime() as rt:
        table = run(rt, functions)
    print(table.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
