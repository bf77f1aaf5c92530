"""The web console in a real browser: Debian's Chromium driven by Playwright, against the local
server with API keys on (``AUTH=1 make dev``) and seeded data.

Every figure the console shows carries its raw value (``data-value``); the tests read the same
records from the API and compare them exactly (as Decimals). Screenshots go to tests/output/
(gitignored). Chromium comes from Debian (``make test`` installs it when /usr/bin/chromium is
missing); Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from conftest import TABLE_NAME

from budget_service.domain import auth
from budget_service.store.base import ApiKeyStore
from localdev.dynamodb import client_for
from localdev.ready_time import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parents[1] / "output"
# Chromium reports each refused request it loads as a console error; the self-service test
# expects 403s, and those lines are the only console errors it tolerates.
REFUSED_LOAD = "Failed to load resource: the server responded with a status of 403"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium (make test installs it)"
)


@pytest.fixture(scope="module")
def server(dynamodb_server):
    proc = ServerProcess(
        env={
            "AUTH": "1",
            "AUTH_CACHE_TTL": "0",
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_server,
            "TABLE_NAME": TABLE_NAME,
        }
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.close()


class Seeded:
    """A project with a cap, a team, three users with spend, a closed period and a refused hold."""

    def __init__(self, url: str, keys: ApiKeyStore) -> None:
        self.url = url
        self.project = f"console-{uuid.uuid4().hex[:6]}"
        now = Decimal(1_700_000_000)
        self.admin = auth.mint(keys, [self.project], "admin", now).key
        self.alice_key = auth.mint(keys, [self.project], "user", now, user="alice").key
        self.put("/budget", {"total_budget": 100, "duration": "monthly"})
        self.put("/teams/research", {"total_budget": 30, "duration": "monthly"})
        self.put("/users/alice", {"total_budget": 10, "duration": "daily", "team": "research"})
        self.put("/users/bob", {"total_budget": 5, "duration": "monthly"})
        self.put("/users/carol", {"total_budget": 2, "duration": "daily", "team": "research"})
        self.cost("alice", "gpt-4o-mini", "1.25")
        self.cost("alice", "claude-sonnet-4", "0.5")
        # A manual reset closes alice's period: her history and the spend report have a row.
        assert self.post("/users/alice/reset", {}).status_code == 200
        self.cost("alice", "gpt-4o-mini", "3.1")
        self.cost("alice", "claude-sonnet-4", "2.2")
        self.cost("bob", "gpt-4o-mini", "4.5")  # 90 % of bob's cap: near
        self.cost("carol", "claude-sonnet-4", "2.75")  # past carol's cap: over
        refused = self.post("/users/alice/holds", {"amount": 50})
        assert refused.status_code == 402, refused.text
        self.refusal = refused.text

    def headers(self, key: str | None = None) -> dict:
        return {"Authorization": f"Bearer {key or self.admin}"}

    def put(self, path: str, body: dict) -> None:
        response = requests.put(
            f"{self.url}/projects/{self.project}{path}", json=body, headers=self.headers(), timeout=30
        )
        assert response.status_code in (200, 201), response.text

    def post(self, path: str, body: dict) -> requests.Response:
        return requests.post(
            f"{self.url}/projects/{self.project}{path}", json=body, headers=self.headers(), timeout=30
        )

    def cost(self, user: str, model: str, cost: str) -> None:
        response = self.post(f"/users/{user}/cost", {"model": model, "cost": float(cost)})
        assert response.status_code in (200, 201), response.text

    def get(self, path: str, key: str | None = None, accept: str = "application/json") -> requests.Response:
        headers = {**self.headers(key), "Accept": accept}
        return requests.get(f"{self.url}/projects/{self.project}{path}", headers=headers, timeout=30)

    def record(self, path: str) -> dict:
        response = self.get(path)
        assert response.status_code == 200, response.text
        return response.json(parse_float=Decimal)


@pytest.fixture(scope="module")
def seeded(server, dynamodb_server):
    return Seeded(server.url, ApiKeyStore(TABLE_NAME, client=client_for(dynamodb_server)))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        yield chromium
        chromium.close()


class Console:
    """One browser tab on the console, recording every console error and uncaught exception."""

    def __init__(self, browser, url: str, **context_options) -> None:
        self.context = browser.new_context(accept_downloads=True, **context_options)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        self.page.goto(f"{url}/console/")

    def sign_in(self, key: str, project: str, user: str = "") -> None:
        """By keyboard only: the key field has the focus, Tab moves on, Enter submits."""
        page = self.page
        page.wait_for_function("document.activeElement && document.activeElement.id === 'key'")
        page.keyboard.type(key)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "project"
        page.keyboard.type(project)
        page.keyboard.press("Tab")
        page.keyboard.type(user)
        page.keyboard.press("Enter")
        self.wait_ready()

    def wait_ready(self) -> None:
        self.page.wait_for_selector("#view[data-ready]")

    def go(self, hash_: str) -> None:
        self.page.evaluate("h => { window.location.hash = h; }", hash_)
        self.page.wait_for_function("h => document.getElementById('view').dataset.ready === h", arg=hash_)

    def value(self, testid: str) -> Decimal:
        return Decimal(self.page.get_attribute(f'[data-testid="{testid}"]', "data-value"))

    def values(self, testid: str) -> list[Decimal]:
        return [
            Decimal(v)
            for v in self.page.eval_on_selector_all(
                f'[data-testid="{testid}"]', "nodes => nodes.map(n => n.dataset.value)"
            )
        ]

    def screenshot(self, name: str) -> None:
        OUTPUT.mkdir(exist_ok=True)
        self.page.screenshot(path=str(OUTPUT / f"console-{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def console(browser, server):
    tabs: list[Console] = []

    def open_tab(**options) -> Console:
        tab = Console(browser, server.url, **options)
        tabs.append(tab)
        return tab

    yield open_tab
    for tab in tabs:
        tab.close()


def test_the_overview_shows_the_apis_figures(console, seeded):
    tab = console()
    tab.sign_in(seeded.admin, seeded.project)
    project = seeded.record("/budget")
    team = seeded.record("/teams/research")
    assert tab.value("level-project-spend") == project["current_cost"] == Decimal("14.3")
    assert tab.value("level-project-cap") == project["total_budget"]
    assert tab.value("level-project-available") == project["available"]
    assert tab.value("level-team-research-spend") == team["current_cost"]
    assert tab.value("level-team-research-cap") == team["total_budget"]
    users = seeded.record("/users")["users"]
    assert tab.values("top-user-spend") == sorted((u["current_cost"] for u in users), reverse=True)
    assert tab.values("model-spend") == sorted(project["model_cost"].values(), reverse=True)
    # The key is in session storage only: not in local storage, not in a cookie.
    storage = tab.page.evaluate("[sessionStorage.getItem('llmb.key'), localStorage.length, document.cookie]")
    assert storage == [seeded.admin, 0, ""]
    tab.screenshot("overview")

    tab.go("#/near")
    near = tab.page.inner_text("table")
    assert "bob" in near and "carol" in near and "alice" not in near
    tab.screenshot("near")
    assert tab.errors == []


def test_a_users_page_draws_the_chart_of_spend_per_period_and_model(console, seeded):
    tab = console()
    tab.sign_in(seeded.admin, seeded.project)
    tab.go("#/user/alice")
    alice = seeded.record("/users/alice")
    periods = seeded.record("/users/alice/periods")["periods"]
    assert tab.value("level-user-spend") == alice["current_cost"] == Decimal("5.3")
    assert tab.values("period-spend") == [p["spend"] for p in periods]
    assert len(periods) == 2
    drawn = tab.page.evaluate(
        """() => {
            const canvas = document.getElementById('periods-chart');
            const chart = Chart.getChart(canvas);
            const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let inked = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
            return {series: chart.data.datasets.map(d => d.label).sort(), bars: chart.data.labels.length,
                    inked, width: canvas.width};
        }"""
    )
    assert drawn["series"] == ["claude-sonnet-4", "gpt-4o-mini"]
    assert drawn["bars"] == 2 and drawn["width"] > 0 and drawn["inked"] > 1000
    tab.screenshot("user")
    assert tab.errors == []


def test_a_refused_hold_shows_the_level_its_window_and_when_it_resets(console, seeded):
    tab = console()
    tab.sign_in(seeded.admin, seeded.project)
    tab.go("#/why")
    tab.page.fill("#why-answer", seeded.refusal)
    tab.page.click("text=Explain")
    tab.page.wait_for_selector('[data-testid="why-level"]')
    cards = tab.page.locator('[data-testid="why-level"]')
    refusal = json.loads(seeded.refusal)["error"]["details"]
    assert cards.count() == len(refusal) >= 1
    alice = seeded.record("/users/alice")
    first = cards.nth(0)
    assert "user level “alice”" in first.inner_text()
    assert first.locator('[data-testid="why-window"]').inner_text() == "daily in UTC"
    assert first.locator('[data-testid="why-reset"]').inner_text().startswith(alice["reset_at"])
    assert Decimal(first.locator('[data-testid="why-needed"]').get_attribute("data-value")) == 50
    tab.screenshot("why")

    # Trying an amount reads the levels and holds nothing.
    tab.page.fill("#why-user", "alice")
    tab.page.fill("#why-amount", "1")
    tab.page.click("text=Would it be refused?")
    tab.page.wait_for_selector('[data-testid="why-none"]')
    assert seeded.record("/users/alice")["held"] == 0
    assert tab.errors == []


def test_the_csv_export_is_the_apis_report(console, seeded):
    tab = console()
    tab.sign_in(seeded.admin, seeded.project)
    tab.go("#/exports")
    with tab.page.expect_download() as download:
        tab.page.click("#export-csv")
    saved = Path(download.value.path()).read_bytes()
    expected = seeded.get("/spend", accept="text/csv")
    assert expected.status_code == 200 and expected.headers["Content-Type"].startswith("text/csv")
    assert saved == expected.content and b"alice" in saved
    tab.page.wait_for_selector('[data-testid="export-total"]')
    assert tab.value("export-total") == seeded.record("/spend")["total"]
    assert tab.errors == []


def test_a_self_service_key_sees_its_own_user_and_is_refused_elsewhere(console, seeded):
    tab = console(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    tab.sign_in(seeded.alice_key, seeded.project, "alice")
    alice = seeded.record("/users/alice")
    assert tab.value("level-user-spend") == alice["current_cost"]
    # The project-wide sections are not offered to a personal key.
    assert tab.page.is_hidden('#nav a[href="#/overview"]')
    assert tab.page.is_visible('#nav a[href="#/me"]')
    # No horizontal scrolling on a phone: the page fits its width.
    assert tab.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    tab.screenshot("self-service-phone")

    tab.go("#/user/bob")
    problem = tab.page.inner_text("#problem")
    assert "403" in problem and "forbidden" in problem
    tab.go("#/overview")
    assert "403" in tab.page.inner_text("#problem")
    tab.screenshot("self-service-refused")
    # The API refuses the same key directly: another user, and a project-wide route.
    assert seeded.get("/users/bob", key=seeded.alice_key).status_code == 403
    assert seeded.get("/budget", key=seeded.alice_key).status_code == 403
    assert seeded.get("/users/alice", key=seeded.alice_key).status_code == 200
    assert tab.errors and all(REFUSED_LOAD in e for e in tab.errors), tab.errors


def test_the_console_is_served_with_its_pinned_chart_library_and_confining_headers(server):
    page = requests.get(f"{server.url}/console", timeout=10, allow_redirects=False)
    assert page.status_code == 301 and page.headers["Location"] == "/console/"
    index = requests.get(f"{server.url}/console/", timeout=10)
    assert index.status_code == 200 and "default-src 'none'" in index.headers["Content-Security-Policy"]
    assert requests.get(f"{server.url}/console/serve.py", timeout=10).status_code == 404
    assert requests.get(f"{server.url}/console/../template.yaml", timeout=10).status_code == 404
    library = requests.get(f"{server.url}/console/vendor/chart.umd.min.js", timeout=10)
    assert library.status_code == 200 and library.text.startswith("/*!\n * Chart.js v")
