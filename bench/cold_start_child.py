"""One cold start, in the fresh interpreter bench/cold_start.py runs this file in.

As the Lambda Python runtime does: the layer (``/opt/python``, here layers/budget) and the
function's code directory on sys.path, import the handler module, then invoke the handler once
with an event. Prints ``BENCH-RESULT {json}`` with both times (seconds) and the status.

Usage: python cold_start_child.py CODE_DIR MODULE HANDLER FUNCTION_ID EVENT_FILE|- TIMEOUT_S MEMORY_MB
"""

import json
import sys
import time


def main(argv: list[str]) -> None:
    code_dir, module_name, handler_name, function_id, event_file, timeout_s, memory_mb = argv
    root = __file__.rsplit("/bench/", 1)[0]
    sys.path[:0] = [code_dir, f"{root}/layers/budget"]

    start = time.perf_counter()
    import importlib

    module = importlib.import_module(module_name)
    handler = getattr(module, handler_name)
    import_s = time.perf_counter() - start

    result: dict = {"function": function_id, "import_s": import_s}
    if event_file != "-":
        # The event and context are built outside the timed span (Lambda hands them over ready).
        sys.path.append(root)
        from localdev.events import LambdaContext

        with open(event_file) as f:
            event = json.load(f)
        headers = event.get("headers") or {}
        if "Idempotency-Key" in headers:  # a fresh key per run: charge, don't replay
            key = f"bench-cold-{time.time_ns()}"
            headers["Idempotency-Key"] = key
            event["multiValueHeaders"]["Idempotency-Key"] = [key]
        context = LambdaContext(function_id, timeout_s=float(timeout_s), memory_mb=int(memory_mb))
        start = time.perf_counter()
        try:
            answer = handler(event, context)
        except Exception as exc:  # e.g. an authorizer's "Unauthorized" (its 401): still an answer
            result["invoke_s"] = time.perf_counter() - start
            result["status"] = f"raised {exc}"[:60]
        else:
            result["invoke_s"] = time.perf_counter() - start
            result["status"] = answer.get("statusCode", "ok") if isinstance(answer, dict) else "ok"
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
