"""The documentation site: it builds with ``mkdocs build --strict`` (no broken link, anchor or
page), and the architecture diagram names exactly the functions template.yaml deploys."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from localdev import template

ROOT = template.ROOT


def template_functions() -> set[str]:
    resources = template.load_template()["Resources"]
    return {name for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}


def diagram_functions() -> set[str]:
    """The `...Function` node ids of the Mermaid diagram(s) in docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    blocks = re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/architecture.md has no mermaid diagram"
    return set(re.findall(r"\b([A-Z][A-Za-z0-9]*Function)\b", "\n".join(blocks)))


def test_the_architecture_diagram_shows_every_function_and_nothing_else():
    deployed = template_functions()
    assert len(deployed) >= 11
    drawn = diagram_functions()
    assert drawn == deployed, (
        f"missing from the diagram: {sorted(deployed - drawn)}; not in the template: {sorted(drawn - deployed)}"
    )


def test_the_site_builds_strictly(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    # The API reference is rendered from openapi.json, not left as the plugin's placeholder.
    assert "[OAD(" not in api and "/projects/{project}/users/{user}/cost" in api
    assert "Cold start per function" in (tmp_path / "site" / "benchmarks" / "index.html").read_text()
