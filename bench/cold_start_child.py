"""One cold start, in the fresh interpreter bench/cold_start.py runs this file in.

As the Lambda Python runtime does: the layer (``/opt/python``, here layers/budget) and the
function's code directory on sys.path, import the handler module, then invoke the handler once
with an event. Prints ``BENCH-RESULT {json}`` with both times (seconds), the status and the
process's peak resident memory (bytes); then it exits at once, without the interpreter's teardown.

With ``BENCH_RECORD_CALLS=<path>`` in the environment, the run also writes the DynamoDB requests
the handler made (client method and parameters) to that file, for the reference handler
(bench/reference/app.py) to replay. Recording imports boto3 before the handler, so a recording
run's times are not used.

With ``BENCH_SNAPSTART=1`` the run is the function as the template ships it: a stand-in
``snapshot_restore_py`` (the module Lambda's runtime provides under SnapStart) records the hooks
the import registers; after the import the before-snapshot hooks run (``prime_s``), then the
after-restore hooks, and only then is the first invocation timed, in the same process.

Usage: python cold_start_child.py CODE_DIR MODULE HANDLER FUNCTION_ID EVENT_FILE|- TIMEOUT_S MEMORY_MB
"""

import json
import os
import resource
import sys
import time


def _record_dynamodb_calls() -> list:
    """Hook boto3's default session (every client the handler creates copies its handlers)."""
    import boto3
    from botocore import xform_name

    calls: list = []

    def record(params, model, **_):
        kept = {k: v for k, v in params.items() if k != "ClientRequestToken"}
        calls.append([xform_name(model.name), json.loads(json.dumps(kept))])

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("provide-client-params.dynamodb", record)
    return calls


def _peak_rss_bytes() -> int:
    """This process's peak resident memory: VmHWM (per address space, so not the bench's, which
    getrusage's ru_maxrss inherits across fork and exec); ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv: list[str]) -> None:
    code_dir, module_name, handler_name, function_id, event_file, timeout_s, memory_mb = argv
    root = __file__.rsplit("/bench/", 1)[0]
    sys.path[:0] = [code_dir, f"{root}/layers/budget"]
    record_to = os.environ.get("BENCH_RECORD_CALLS")
    calls = _record_dynamodb_calls() if record_to else None
    hooks: dict[str, list] = {"before": [], "after": []}
    if os.environ.get("BENCH_SNAPSTART") == "1":
        import types

        sys.modules["snapshot_restore_py"] = types.SimpleNamespace(  # type: ignore[assignment]
            register_before_snapshot=hooks["before"].append, register_after_restore=hooks["after"].append
        )

    start = time.perf_counter()
    import importlib

    module = importlib.import_module(module_name)
    handler = getattr(module, handler_name)
    import_s = time.perf_counter() - start

    result: dict = {"function": function_id, "import_s": import_s}
    if os.environ.get("BENCH_SNAPSTART") == "1":
        start = time.perf_counter()
        for hook in hooks["before"]:
            hook()
        result["prime_s"] = time.perf_counter() - start
        for hook in hooks["after"]:
            hook()
        result["hooks"] = len(hooks["before"])
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
    tokens = sys.modules.get("budget_service.pricing.tokens")
    if tokens is not None:  # the tiktoken encodings the first invocation loaded (to count tokens)
        result["encodings"] = tokens.loaded_encodings()
    result["peak_rss_bytes"] = _peak_rss_bytes()
    usage = resource.getrusage(resource.RUSAGE_SELF)  # the whole process since exec: CPU it used
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    result["modules"] = len(sys.modules)
    if record_to:
        with open(record_to, "w") as f:
            json.dump(calls, f)
    print("BENCH-RESULT " + json.dumps(result), flush=True)
    # Lambda freezes and later discards an environment; it never finalizes the interpreter on
    # the way to an answer. Skip the teardown (freeing every module), which is no part of a cold
    # start and grows with the modules loaded.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
