// The web console: every figure on it is read from the budget API with the key the user typed.
// No framework, no build: plain DOM, Chart.js (vendor/, pinned in package.json) for the charts.
// The key lives in sessionStorage only (gone when the tab closes) and is sent only to this origin.
"use strict";

(function () {
  const STORE = window.sessionStorage;
  const NEAR = 0.8; // "near a cap": spend at or past this fraction of the total budget
  const PAGE = 100; // users per request when listing a project
  const MAX_PAGES = 50; // at most this many pages of users (5,000) for the overview
  const MIN_ELAPSED = 0.05; // a pace is projected once this fraction of the period has passed

  // The API is the origin that served this page, at the path before /console (a stage on AWS).
  const API = window.location.origin + window.location.pathname.split("/console")[0];

  const $ = (id) => document.getElementById(id);
  const charts = [];

  // ---- session ------------------------------------------------------------------------------

  function session() {
    const project = STORE.getItem("llmb.project");
    if (!project) return null;
    return { key: STORE.getItem("llmb.key") || "", project, user: STORE.getItem("llmb.user") || "" };
  }

  function signIn(key, project, user) {
    STORE.setItem("llmb.key", key);
    STORE.setItem("llmb.project", project);
    if (user) STORE.setItem("llmb.user", user);
    else STORE.removeItem("llmb.user");
  }

  function signOut() {
    ["llmb.key", "llmb.project", "llmb.user"].forEach((k) => STORE.removeItem(k));
    window.location.hash = "";
    render();
  }

  // ---- the API ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || "http_" + status;
      this.body = body;
    }
  }

  async function api(path, { accept = "application/json", query } = {}) {
    const s = session();
    const headers = { Accept: accept };
    if (s && s.key) headers.Authorization = "Bearer " + s.key;
    const url = new URL(API + path);
    Object.entries(query || {}).forEach(([k, v]) => {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
    });
    const response = await fetch(url, { headers, credentials: "omit", cache: "no-store" });
    if (accept === "text/csv" && response.ok) return response.blob();
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (e) {
      body = null;
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // A read that may be refused or absent: null for 403 and 404 (the page says what it could not read).
  async function maybe(path, options) {
    try {
      return await api(path, options);
    } catch (e) {
      if (e instanceof ApiError && (e.status === 403 || e.status === 404)) return null;
      throw e;
    }
  }

  async function allPages(path, field) {
    const items = [];
    let cursor = null;
    for (let page = 0; page < MAX_PAGES; page++) {
      const body = await api(path, { query: { limit: PAGE, cursor } });
      items.push(...body[field]);
      cursor = body.next_cursor;
      if (!cursor) return { items, complete: true };
    }
    return { items, complete: false };
  }

  const enc = encodeURIComponent;
  const projectPath = () => "/projects/" + enc(session().project);
  const userPath = (user) => projectPath() + "/users/" + enc(user);

  // ---- formatting ---------------------------------------------------------------------------

  // A JSON number as the API wrote it, in plain notation (never 1e-7): the figures reconcile
  // with the API's answers and its CSV to the last digit.
  function plain(n) {
    if (n === null || n === undefined) return "–";
    let text = String(n);
    if (!/e/i.test(text)) return text;
    const [mantissa, exp] = text.toLowerCase().split("e");
    const e = parseInt(exp, 10);
    const negative = mantissa.startsWith("-");
    const digits = mantissa.replace("-", "").replace(".", "");
    const point = mantissa.replace("-", "").indexOf(".");
    const intLen = (point === -1 ? digits.length : point) + e;
    if (intLen <= 0) text = "0." + "0".repeat(-intLen) + digits;
    else if (intLen >= digits.length) text = digits + "0".repeat(intLen - digits.length);
    else text = digits.slice(0, intLen) + "." + digits.slice(intLen);
    return (negative ? "-" : "") + text;
  }
  const usd = (n) => (n === null || n === undefined ? "–" : "$" + plain(n));
  const pct = (part, whole) => (whole > 0 ? Math.round((part / whole) * 1000) / 10 + "%" : "–");

  function when(iso) {
    if (!iso) return "never (no period)";
    const d = new Date(iso);
    return iso + " (" + d.toLocaleString() + " here)";
  }

  function windowOf(record) {
    if (!record.duration) return "no period (a lifetime budget)";
    const d = typeof record.duration === "number" ? record.duration + "-day rolling" : record.duration;
    return d + (record.timezone ? " in " + record.timezone : " in UTC");
  }

  // Pace: the spend so far, extended at the same rate to the period's end (by this browser's clock).
  function pace(record) {
    if (!record.period_start || !record.reset_at) return null;
    const start = Date.parse(record.period_start);
    const end = Date.parse(record.reset_at);
    const now = Date.now();
    if (!(end > start) || now <= start || now >= end) return null;
    // Too early in the period, a rate extrapolated from minutes says nothing about a month.
    if ((now - start) / (end - start) < MIN_ELAPSED) return null;
    return (record.current_cost * (end - start)) / (now - start);
  }

  // ---- DOM helpers --------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    });
    children.flat(Infinity).forEach((c) => {
      if (c === null || c === undefined || c === false) return;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    });
    return node;
  }

  // A figure carries its raw value (data-value) so a test compares it with the API's answer.
  const money = (n, testid) =>
    el("span", { class: "money", dataset: { value: plain(n), testid: testid || "" } }, usd(n));

  function meter(spent, total, label) {
    const ratio = total > 0 ? spent / total : spent > 0 ? 1 : 0;
    const state = ratio >= 1 ? "over" : ratio >= NEAR ? "warn" : "";
    const bar = el("span");
    bar.style.width = Math.min(100, Math.round(ratio * 100)) + "%"; // CSSOM: allowed by the page's CSP
    return el(
      "div",
      {
        class: "meter " + state,
        role: "meter",
        "aria-label": label,
        "aria-valuemin": "0",
        "aria-valuemax": String(total),
        "aria-valuenow": String(spent),
        "aria-valuetext": usd(spent) + " of " + usd(total) + " (" + pct(spent, total) + ")",
      },
      bar
    );
  }

  function table(caption, headings, rows, numeric = []) {
    return el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        {},
        el("caption", { text: caption }),
        el("thead", {}, el("tr", {}, headings.map((h, i) => el("th", { scope: "col", class: numeric.includes(i) ? "num" : "" }, h)))),
        el(
          "tbody",
          {},
          rows.length
            ? rows.map((r) => el("tr", {}, r.map((c, i) => el("td", { class: numeric.includes(i) ? "num" : "" }, c))))
            : el("tr", {}, el("td", { colspan: String(headings.length), text: "none" }))
        )
      )
    );
  }

  function facts(pairs) {
    return el("dl", { class: "facts" }, pairs.map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  }

  function status(text) {
    $("status").textContent = text;
  }

  function problem(error) {
    const box = $("problem");
    if (!error) {
      box.hidden = true;
      box.textContent = "";
      return;
    }
    box.hidden = false;
    box.textContent =
      error instanceof ApiError
        ? `The API answered ${error.status} (${error.code}): ${error.message}`
        : "Something went wrong: " + error.message;
  }

  function clearCharts() {
    while (charts.length) charts.pop().destroy();
  }

  function chart(canvas, config) {
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options);
    const made = new window.Chart(canvas, config);
    charts.push(made);
    return made;
  }

  // ---- a level's card (project, team or user) -----------------------------------------------

  function levelCard(title, record, testid) {
    const projected = pace(record);
    const over = projected !== null && record.total_budget !== null && projected > record.total_budget;
    return el(
      "article",
      { class: "card", dataset: { testid } },
      el("h3", { text: title }),
      el("p", { class: "figure" }, money(record.current_cost, testid + "-spend"), " of ", money(record.total_budget, testid + "-cap")),
      meter(record.current_cost, record.total_budget, title + ": spend against its cap"),
      facts([
        ["Held (live holds)", money(record.held, testid + "-held")],
        ["Available", money(record.available, testid + "-available")],
        ["Window", windowOf(record)],
        ["Period started", record.period_start || "at creation"],
        ["Resets", when(record.reset_at)],
        [
          "Pace to period end",
          projected === null
            ? "– (no period, or under 5% of it has passed, by this browser's clock)"
            : el("span", { class: over ? "state-over" : "" }, usd(Math.round(projected * 100) / 100), over ? " (over the cap)" : ""),
        ],
      ])
    );
  }

  // ---- views --------------------------------------------------------------------------------

  async function overview(view) {
    const [project, teams, users] = await Promise.all([
      maybe(projectPath() + "/budget"),
      allPages(projectPath() + "/teams", "teams"),
      allPages(projectPath() + "/users", "users"),
    ]);
    // Each team's own record: GET /teams/{team} sums the level's escrow slices at one instant,
    // where a page of GET /teams can show only the level's first slice.
    teams.items = await Promise.all(teams.items.map((t) => api(projectPath() + "/teams/" + enc(t.team))));
    view.append(el("h2", { id: "view-title", text: "Project " + session().project }));
    const cards = el("div", { class: "cards" });
    if (project) cards.append(levelCard("Project cap", project, "level-project"));
    else cards.append(el("article", { class: "card" }, el("h3", { text: "Project cap" }), el("p", { text: "This project has no cap (no PUT /budget)." })));
    teams.items.forEach((t) => cards.append(levelCard("Team " + t.team, t, "level-team-" + t.team)));
    view.append(el("section", { "aria-label": "Caps" }, cards));

    const byCost = [...users.items].sort((a, b) => b.current_cost - a.current_cost);
    view.append(
      table(
        "Top users (spend in each user's current period)" + (users.complete ? "" : ", first " + users.items.length),
        ["User", "Team", "Spend", "Cap", "Used"],
        byCost.slice(0, 10).map((u) => [
          el("a", { href: "#/user/" + enc(u.user) }, u.user),
          u.team || "–",
          money(u.current_cost, "top-user-spend"),
          money(u.total_budget),
          pct(u.current_cost, u.total_budget),
        ]),
        [2, 3, 4]
      )
    );
    if (project) {
      const models = Object.entries(project.model_cost || {}).sort((a, b) => b[1] - a[1]);
      view.append(table("Top models (the project's current period)", ["Model", "Spend"], models.map(([m, c]) => [m, money(c, "model-spend")]), [1]));
      if (models.length) {
        const canvas = el("canvas", { id: "models-chart", role: "img", "aria-label": "Spend per model in the project's current period (the table above has the figures)" });
        view.append(el("div", { class: "card" }, el("h3", { text: "Spend per model" }), el("div", { class: "chart-box" }, canvas)));
        chart(canvas, {
          type: "bar",
          data: { labels: models.map((m) => m[0]), datasets: [{ label: "USD", data: models.map((m) => m[1]), backgroundColor: "#0b5cad" }] },
          options: { indexAxis: "y", plugins: { legend: { display: false } } },
        });
      }
    }
    view.append(
      table(
        "Teams",
        ["Team", "Spend", "Cap", "Users"],
        [...teams.items].sort((a, b) => b.current_cost - a.current_cost).map((t) => [t.team, money(t.current_cost), money(t.total_budget), String(t.users)]),
        [1, 2, 3]
      )
    );
    view.append(el("p", { class: "note", text: "Tags: the API does not report spend per tag yet, so the console shows none." }));
    status(`Read ${users.items.length} users and ${teams.items.length} teams.`);
  }

  async function near(view) {
    const users = await allPages(projectPath() + "/users", "users");
    const listed = users.items
      .filter((u) => u.total_budget > 0 ? u.current_cost + u.held >= NEAR * u.total_budget : u.current_cost > 0)
      .sort((a, b) => b.current_cost / (b.total_budget || 1) - a.current_cost / (a.total_budget || 1));
    view.append(el("h2", { id: "view-title", text: "Users near or over a cap" }));
    view.append(el("p", { class: "note", text: `Users whose spend plus live holds is at ${NEAR * 100}% of their cap or more.` }));
    view.append(
      table(
        "Near or over",
        ["User", "Spend", "Held", "Cap", "Used", "State", "Resets"],
        listed.map((u) => [
          el("a", { href: "#/user/" + enc(u.user) }, u.user),
          money(u.current_cost),
          money(u.held),
          money(u.total_budget),
          pct(u.current_cost, u.total_budget),
          u.current_cost >= u.total_budget ? el("span", { class: "state-over", text: "over" }) : el("span", { class: "state-warn", text: "near" }),
          u.reset_at || "never",
        ]),
        [1, 2, 3, 4]
      )
    );
    status(`${listed.length} of ${users.items.length} users near or over their cap.`);
  }

  async function userPage(view, user, self) {
    const record = await api(userPath(user));
    const [periods, ledger, team, project] = await Promise.all([
      api(userPath(user) + "/periods", { query: { limit: 50 } }),
      api(userPath(user) + "/ledger", { query: { limit: 50 } }),
      record.team ? maybe(projectPath() + "/teams/" + enc(record.team)) : Promise.resolve(null),
      self ? Promise.resolve(null) : maybe(projectPath() + "/budget"),
    ]);
    view.append(el("h2", { id: "view-title", text: (self ? "My budget: " : "User ") + user }));
    const cards = el("div", { class: "cards" }, levelCard("User " + user, record, "level-user"));
    if (team) cards.append(levelCard("Team " + team.team, team, "level-team"));
    else if (record.team) cards.append(el("article", { class: "card" }, el("h3", { text: "Team " + record.team }), el("p", { class: "note", text: "This key cannot read the team's cap." })));
    if (project) cards.append(levelCard("Project cap", project, "level-project"));
    view.append(cards);

    // Spend per period, stacked by model: the current period first in the API's answer, shown oldest first.
    const rows = [...periods.periods].reverse();
    const models = [...new Set(rows.flatMap((p) => Object.keys(p.model_cost || {})))];
    const palette = ["#0b5cad", "#1a7f37", "#9a6700", "#8250df", "#b42318", "#0e7490", "#6e7781"];
    const labels = rows.map((p) => p.period_start.slice(0, 16).replace("T", " ") + (p.current ? " (now)" : ""));
    const datasets = models.map((m, i) => ({ label: m, data: rows.map((p) => (p.model_cost || {})[m] || 0), backgroundColor: palette[i % palette.length] }));
    // Spend not attributed to a model (adjustments without one) as its own series.
    const other = rows.map((p) => p.spend - Object.values(p.model_cost || {}).reduce((a, b) => a + b, 0));
    if (other.some((v) => Math.abs(v) > 1e-12)) datasets.push({ label: "no model", data: other, backgroundColor: "#6e7781" });
    const canvas = el("canvas", { id: "periods-chart", role: "img", "aria-label": "Spend per period and model (the table below has the figures)" });
    view.append(el("section", { class: "card" }, el("h3", { text: "Spend per period and model" }), el("div", { class: "chart-box" }, canvas)));
    chart(canvas, {
      type: "bar",
      data: { labels, datasets },
      options: { scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "USD" } } } },
    });
    view.append(
      table(
        "Periods (newest first)",
        ["Start", "End", "Spend", "Cap", "Held", "Closed by"],
        periods.periods.map((p) => [p.period_start, p.period_end || "–", money(p.spend, "period-spend"), money(p.total_budget), money(p.held), p.current ? "running" : p.closed_by]),
        [2, 3, 4]
      )
    );
    view.append(
      table(
        "Current period by model",
        ["Model", "Spend"],
        Object.entries(record.model_cost || {}).map(([m, c]) => [m, money(c, "user-model-spend")]),
        [1]
      )
    );
    view.append(
      el(
        "section",
        { class: "card" },
        el("h3", { text: "Live holds" }),
        facts([["Held now", money(record.held, "user-held")]]),
        el("p", { class: "note", text: "The API reports the total held, not each hold: a list of live holds needs a route the API does not have yet." })
      )
    );
    view.append(
      el(
        "section",
        { class: "card" },
        el("h3", { text: "Alerts" }),
        facts([["Thresholds", record.alert_thresholds === null ? "inherited (the project's or the deployment's default)" : record.alert_thresholds.length ? record.alert_thresholds.map((t) => t * 100 + "%").join(", ") : "off"]]),
        el("p", { class: "note", text: "Alerts fired go to the stack's EventBridge bus; the API does not list them, so the console cannot show them." })
      )
    );
    view.append(
      table(
        "Ledger (changes other than spend, newest first)",
        ["When", "Action", "Key", "Details"],
        ledger.entries.map((e) => [e.at, e.action, e.key_id || "–", JSON.stringify(e.details)]),
        []
      )
    );
    status(`Read ${user}: ${periods.periods.length} periods, ${ledger.entries.length} ledger entries.`);
  }

  // "Why was this refused": a 402 answer's levels, each joined with its record (window, reset).
  async function levelRecord(detail) {
    if (detail.level === "user") return maybe(userPath(detail.name));
    if (detail.level === "team") return maybe(projectPath() + "/teams/" + enc(detail.name));
    if (detail.level === "project") return maybe(projectPath() + "/budget");
    return null;
  }

  async function explain(out, details) {
    out.replaceChildren();
    if (!details.length) {
      out.append(el("p", { "data-testid": "why-none", text: "Every level has the headroom: this amount would be held." }));
      return;
    }
    const records = await Promise.all(details.map(levelRecord));
    const cards = details.map((d, i) => {
      const record = records[i];
      return (
        el(
          "article",
          { class: "card", dataset: { testid: "why-level" } },
          el("h3", { text: `Refused by the ${d.level} level “${d.name}”` }),
          facts([
            ["Needed", money(d.needed, "why-needed")],
            ["Available then", money(d.available, "why-available")],
            ["Cap", record ? money(record.total_budget, "why-cap") : "– (this key cannot read this level)"],
            ["Window", record ? el("span", { dataset: { testid: "why-window" } }, windowOf(record)) : "–"],
            ["Resets", record ? el("span", { dataset: { testid: "why-reset" } }, when(record.reset_at)) : "–"],
            ["Available now", record ? money(record.available, "why-available-now") : "–"],
          ])
        )
      );
    });
    out.replaceChildren(...cards); // all at once: the answer is complete when it appears
  }

  function why(view) {
    const s = session();
    view.append(el("h2", { id: "view-title", text: "Why was this refused?" }));
    const out = el("div", { id: "why-result", "aria-live": "polite" });
    const answer = el("textarea", { id: "why-answer", "aria-describedby": "why-answer-help" });
    const pasteForm = el(
      "form",
      {
        onsubmit: async (event) => {
          event.preventDefault();
          problem(null);
          let body;
          try {
            body = JSON.parse(answer.value);
          } catch (e) {
            out.replaceChildren(el("p", { class: "state-over", text: "That is not JSON: paste the whole answer of the refused request." }));
            return;
          }
          const error = (body && body.error) || {};
          if (error.code !== "budget_exceeded" || !Array.isArray(error.details)) {
            out.replaceChildren(el("p", { class: "state-over", text: "That answer is not a budget refusal (code budget_exceeded)." }));
            return;
          }
          await run(() => explain(out, error.details));
        },
      },
      el("label", { for: "why-answer", text: "The refused request's answer (HTTP 402)" }),
      answer,
      el("p", { id: "why-answer-help", class: "help", text: 'E.g. {"error": {"code": "budget_exceeded", "details": [...]}}' }),
      el("button", { type: "submit", text: "Explain" })
    );
    const userInput = el("input", { id: "why-user", required: true, value: s.user || "", readonly: s.user ? true : null });
    const amountInput = el("input", { id: "why-amount", required: true, inputmode: "decimal", pattern: "[0-9]*[.]?[0-9]+" });
    const tryForm = el(
      "form",
      {
        class: "inline-form",
        onsubmit: async (event) => {
          event.preventDefault();
          problem(null);
          const amount = Number(amountInput.value);
          await run(async () => {
            // The rule a hold is held to: every level the user counts toward needs `available`
            // >= the amount. Read, never held: nothing is reserved by asking.
            const record = await api(userPath(userInput.value));
            const levels = [{ level: "user", name: record.user, record }];
            if (record.team) levels.push({ level: "team", name: record.team, record: await maybe(projectPath() + "/teams/" + enc(record.team)) });
            if (!s.user) levels.push({ level: "project", name: s.project, record: await maybe(projectPath() + "/budget") });
            const refusing = levels
              .filter((l) => l.record && l.record.available < amount)
              .map((l) => ({ level: l.level, name: l.name, available: Math.max(l.record.available, 0), needed: amount }));
            await explain(out, refusing);
          });
        },
      },
      el("div", {}, el("label", { for: "why-user", text: "User" }), userInput),
      el("div", {}, el("label", { for: "why-amount", text: "Amount to hold (USD)" }), amountInput),
      el("div", {}, el("button", { type: "submit", class: "secondary", text: "Would it be refused?" }))
    );
    view.append(
      el("section", { class: "card" }, el("h3", { text: "From a refusal" }), pasteForm),
      el("section", { class: "card" }, el("h3", { text: "Or try an amount (reads only; holds nothing)" }), tryForm),
      out
    );
  }

  function exportsView(view) {
    view.append(el("h2", { id: "view-title", text: "Exports" }));
    const from = el("input", { id: "export-from", type: "date" });
    const to = el("input", { id: "export-to", type: "date" });
    const summary = el("div", { id: "export-summary", "aria-live": "polite" });
    const range = () => ({ from: from.value ? from.value + "T00:00:00Z" : null, to: to.value ? to.value + "T00:00:00Z" : null });
    view.append(
      el("p", { class: "note", text: "Spend per user and model over the closed periods that started in the range (the API's spend report). The CSV is the API's own answer, byte for byte." }),
      el(
        "form",
        {
          class: "inline-form",
          onsubmit: async (event) => {
            event.preventDefault();
            problem(null);
            await run(async () => {
              const blob = await api(projectPath() + "/spend", { accept: "text/csv", query: range() });
              const link = el("a", { href: URL.createObjectURL(blob), download: `spend-${session().project}.csv` });
              document.body.append(link);
              link.click();
              link.remove();
              const report = await api(projectPath() + "/spend", { query: range() });
              summary.replaceChildren(
                facts([["Total", money(report.total, "export-total")], ["Periods", String(report.periods)], ["Users", String(report.users.length)]])
              );
              status("Downloaded the spend report as CSV.");
            });
          },
        },
        el("div", {}, el("label", { for: "export-from", text: "From (UTC, optional)" }), from),
        el("div", {}, el("label", { for: "export-to", text: "To, exclusive (optional)" }), to),
        el("div", {}, el("button", { type: "submit", id: "export-csv", text: "Download CSV" }))
      ),
      summary
    );
  }

  // ---- routing ------------------------------------------------------------------------------

  async function run(work) {
    try {
      await work();
    } catch (e) {
      problem(e);
      status("");
      if (!(e instanceof ApiError)) throw e; // a bug: keep it visible in the browser's console
    }
  }

  let rendering = 0; // the latest render wins: an earlier one still reading leaves the page alone

  async function render() {
    const mine = ++rendering;
    clearCharts();
    problem(null);
    const s = session();
    const view = $("view");
    view.replaceChildren();
    delete view.dataset.ready;
    $("sign-in").hidden = !!s;
    view.hidden = !s;
    $("nav").hidden = !s;
    $("sign-out").hidden = !s;
    $("who").hidden = !s;
    if (!s) {
      status("");
      $("key").focus();
      return;
    }
    const mode = s.user ? "user" : "project";
    $("who").textContent = s.user ? `${s.project} / ${s.user}` : s.project;
    document.querySelectorAll("#nav li[data-mode]").forEach((li) => (li.hidden = li.dataset.mode !== mode));
    const fallback = s.user ? "#/me" : "#/overview";
    const hash = window.location.hash || fallback;
    document.querySelectorAll("#nav a").forEach((a) => {
      if (hash.startsWith(a.getAttribute("href"))) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    const [, route, arg] = hash.split("/");
    status("Loading…");
    const page = el("div");
    view.replaceChildren(page); // attached before charts are drawn into it (they size to it)
    await run(async () => {
      if (route === "me") await userPage(page, s.user, true);
      else if (route === "user" && arg) await userPage(page, decodeURIComponent(arg), decodeURIComponent(arg) === s.user);
      else if (route === "near") await near(page);
      else if (route === "why") {
        why(page);
        status("");
      } else if (route === "exports") {
        exportsView(page);
        status("");
      } else await overview(page);
    });
    if (mine !== rendering) return;
    view.dataset.ready = hash; // for tests and assistive tech: this view is complete
    const title = $("view-title");
    if (title) document.title = title.textContent + " · LLM budget console";
  }

  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("key").value.trim(), $("project").value.trim(), $("user").value.trim());
    $("key").value = "";
    const target = $("user").value.trim() ? "#/me" : "#/overview";
    if (window.location.hash === target) render();
    else window.location.hash = target; // hashchange renders
  });
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", () => {
    render().then(() => $("main").focus());
  });
  render();
})();
