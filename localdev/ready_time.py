"""Start ``python -m localdev.server`` as a subprocess and wait until it answers.

``python -m localdev.ready_time`` measures the time from process start to the first answered
request (a real ``POST /get_budget`` through the handler), which is what a user of ``make dev``
waits for once the virtualenv exists. The tests use ``start_server`` the same way.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from localdev.template import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    """True once the server has handled one litellm get_budget request end to end."""
    request = urllib.request.Request(
        url + "/get_budget",
        data=json.dumps({"project_name": "readiness-probe"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except urllib.error.HTTPError as exc:  # AUTH=1 without a key: the authorizer answered
        return exc.code == 401
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class ServerProcess:
    def __init__(self, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="localdev-server-", suffix=".log", delete=False)
        child_env = {**os.environ, **(env or {}), "PORT": str(self.port)}
        self.started = time.monotonic()
        # Output goes to a file: a pipe nobody reads could fill up and block the server.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localdev.server"],
            cwd=ROOT,
            env=child_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll until the server answers; seconds since start. Fails fast if it exits."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            # Ready: it answers, and it has printed its start-up notes (the banner ends them; a
            # request can be answered a moment before they are flushed).
            if answers(self.url) and "Serving on" in self.output():
                return time.monotonic() - self.started
            time.sleep(0.05)  # poll interval between checks of the condition
        raise TimeoutError(f"server did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, sig: int | None = None) -> int:
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    times = []
    for _ in range(runs):
        server = ServerProcess()
        try:
            times.append(server.wait_ready())
        finally:
            server.close()
    print("ready in " + ", ".join(f"{t:.2f}s" for t in times) + f" (best {min(times):.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
