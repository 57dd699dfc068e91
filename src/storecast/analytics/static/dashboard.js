// storecast dashboard: reads the analytics API (same origin, session cookie) and draws
// KPI tiles, tables and plotly charts. No inline script, no external resources.
(() => {
  "use strict";

  const body = document.body;
  const API = body.dataset.api;
  const LOGIN_URL = body.dataset.loginUrl;
  const REFRESH_MS = Math.max(1, Number(body.dataset.refreshSeconds) || 30) * 1000;

  const PLOT_CONFIG = { displaylogo: false, responsive: true };
  const FONT = { family: "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif", size: 12 };
  const COLORS = { band: "rgba(31, 111, 235, 0.18)", q50: "#1f6feb", actual: "#1d2630", bad: "#cf222e" };

  let selectedStore = null;
  let timer = null;
  let running = false;
  let leaving = false;
  let refreshes = 0;

  // -- formatting ------------------------------------------------------------------------

  const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const DASH = "—";

  function isNum(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  const formats = {
    count: (v) => (isNum(v) ? integer.format(v) : DASH),
    percent: (v) => (isNum(v) ? `${(v * 100).toFixed(1)}%` : DASH),
    ms: (v) => (isNum(v) ? `${v.toFixed(1)} ms` : DASH),
  };

  function formatTime(iso) {
    if (!iso) return DASH;
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }

  function modelLabel(name, version, arm) {
    if (name === null || name === undefined || name === "") return DASH;
    const base = version === null || version === undefined ? name : `${name} v${version}`;
    return arm ? `${base} (${arm})` : base;
  }

  function dig(obj, path) {
    return path.split(".").reduce((o, key) => (o === null || o === undefined ? undefined : o[key]), obj);
  }

  // -- DOM helpers (text only: no API value is ever parsed as HTML) -------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else node[key] = value;
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fillRows(tbody, rows, columns, emptyText) {
    if (rows.length === 0) {
      tbody.replaceChildren(el("tr", {}, el("td", { class: "empty", colSpan: columns }, emptyText)));
    } else {
      tbody.replaceChildren(...rows);
    }
  }

  // -- API -------------------------------------------------------------------------------

  class ApiFailure extends Error {}

  function signOut() {
    if (leaving) return; // several calls fail at once: navigate only once
    leaving = true;
    clearTimeout(timer);
    window.location.assign(LOGIN_URL);
  }

  async function api(path) {
    const response = await fetch(API + path, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store",
    });
    if (response.status === 401) {
      signOut(); // the session ended (signed out elsewhere, or the token was revoked)
      throw new ApiFailure("signed out");
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        const error = (await response.json()).error;
        if (error && error.message) message = `${response.status}: ${error.message}`;
      } catch (_ignored) {
        // not a JSON error body: keep the status line
      }
      throw new ApiFailure(`${path}: ${message}`);
    }
    return response.json();
  }

  // -- renderers ---------------------------------------------------------------------------

  function renderTiles(fleet) {
    for (const node of document.querySelectorAll("[data-kpi]")) {
      const value = dig(fleet, node.dataset.path);
      const format = formats[node.dataset.unit] || formats.count;
      node.dataset.value = isNum(value) ? String(value) : "";
      node.textContent = format(value);
    }
    const win = fleet.window;
    document.getElementById("fleet-window").textContent = win
      ? `Window ${formatTime(win.start)} – ${formatTime(win.end)}; devices total ${integer.format(fleet.devices.total)}`
      : "";
  }

  function renderStores(list) {
    const rows = list.stores.map((s) =>
      el(
        "tr",
        { "data-store-id": s.store_id },
        el("td", {}, s.store_id),
        el("td", {}, s.region || DASH),
        el("td", {}, el("span", { class: `badge badge-${s.status}` }, s.status)),
        el("td", {}, modelLabel(s.model_name, s.model_version)),
        el("td", {}, s.agent_version || DASH),
        el("td", { class: "num" }, formats.percent(s.accuracy.wape)),
        el("td", { class: "num" }, formats.count(s.forecasts_served)),
        el("td", { class: "num" }, formats.percent(s.error_rate)),
        el("td", {}, formatTime(s.last_heartbeat_at)),
      ),
    );
    fillRows(document.querySelector("#fleet-table tbody"), rows, 9, "No stores have reported yet.");

    const select = document.getElementById("store-select");
    const ids = list.stores.map((s) => s.store_id);
    if (selectedStore === null || !ids.includes(selectedStore)) selectedStore = ids.length ? ids[0] : null;
    const current = Array.from(select.options).map((o) => o.value);
    if (current.join("\n") !== ids.join("\n")) {
      select.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
    }
    if (selectedStore !== null) select.value = selectedStore;
  }

  function baseLayout(extra) {
    return Object.assign(
      {
        font: FONT,
        margin: { l: 56, r: 24, t: 12, b: 40 },
        paper_bgcolor: "rgba(0,0,0,0)",
        plot_bgcolor: "rgba(0,0,0,0)",
        legend: { orientation: "h", y: 1.12, traceorder: "normal" },
        hovermode: "x unified",
      },
      extra,
    );
  }

  function emptyLayout(text) {
    return baseLayout({
      xaxis: { visible: false },
      yaxis: { visible: false },
      annotations: [{ text, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }],
    });
  }

  function draw(id, traces, layout) {
    const node = document.getElementById(id);
    return window.Plotly.react(node, traces, layout, PLOT_CONFIG);
  }

  async function renderStoreChart() {
    const node = document.getElementById("chart-store");
    const note = document.getElementById("store-accuracy");
    if (selectedStore === null) {
      node.dataset.storeId = "";
      note.textContent = "";
      await draw("chart-store", [], emptyLayout("No store data yet"));
      return;
    }
    const store = selectedStore;
    const summary = await api(`/stores/${encodeURIComponent(store)}/summary`);
    if (store !== selectedStore) return; // the user picked another store meanwhile
    const x = summary.series.map((p) => p.ts);
    const pick = (key) => summary.series.map((p) => p[key]);
    const traces = [
      { x, y: pick("q90"), name: "q90", mode: "lines", line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
      {
        x, y: pick("q10"), name: "q10–q90", mode: "lines", line: { width: 0 },
        fill: "tonexty", fillcolor: COLORS.band, hoverinfo: "skip",
      },
      { x, y: pick("q50"), name: "forecast (q50)", mode: "lines", line: { color: COLORS.q50, width: 2 } },
      { x, y: pick("actual"), name: "actual", mode: "lines", line: { color: COLORS.actual, width: 1.5 } },
    ];
    const layout = summary.series.length
      ? baseLayout({ yaxis: { title: { text: "sales units" }, rangemode: "tozero" } })
      : emptyLayout(`No forecasts or actuals for ${store} in this window`);
    await draw("chart-store", traces, layout);
    node.dataset.storeId = store;
    node.dataset.points = String(summary.series.length);
    const acc = summary.accuracy;
    note.textContent =
      `WAPE ${formats.percent(acc.wape)} · bias ${formats.percent(acc.bias)} · ` +
      `80% coverage ${formats.percent(acc.coverage_80)} · horizon ${summary.horizon} h`;
  }

  async function renderModels(perf) {
    const versions = perf.versions.filter((v) => isNum(v.accuracy.wape));
    if (versions.length === 0) {
      await draw("chart-models", [], emptyLayout("No paired forecasts yet"));
      return;
    }
    const wape = versions.map((v) => v.accuracy.wape);
    const hi = versions.map((v, i) => (v.wape_ci95 ? v.wape_ci95[1] - wape[i] : 0));
    const lo = versions.map((v, i) => (v.wape_ci95 ? wape[i] - v.wape_ci95[0] : 0));
    const trace = {
      type: "bar",
      x: versions.map((v) => modelLabel(v.model_name, v.model_version, v.arm)),
      y: wape,
      error_y: { type: "data", array: hi, arrayminus: lo, visible: true },
      marker: { color: COLORS.q50 },
      customdata: versions.map((v) => [v.forecasts_served, v.stores]),
      hovertemplate: "WAPE %{y:.1%}<br>%{customdata[0]} forecasts, %{customdata[1]} stores<extra></extra>",
      name: "WAPE",
    };
    await draw(
      "chart-models",
      [trace],
      baseLayout({ yaxis: { tickformat: ".0%", rangemode: "tozero" }, hovermode: "closest", showlegend: false }),
    );
  }

  async function renderSeries(series) {
    if (series.hours.length === 0) {
      await draw("chart-series", [], emptyLayout("No inference statistics yet"));
      return;
    }
    const x = series.hours.map((h) => h.hour);
    const traces = [
      {
        x, y: series.hours.map((h) => h.latency.p95_ms), name: "latency p95 (ms)",
        mode: "lines", line: { color: COLORS.q50 },
      },
      {
        x, y: series.hours.map((h) => h.error_rate), name: "error rate", yaxis: "y2",
        mode: "lines", line: { color: COLORS.bad },
      },
    ];
    await draw(
      "chart-series",
      traces,
      baseLayout({
        margin: { l: 56, r: 56, t: 12, b: 40 },
        yaxis: { title: { text: "ms" }, rangemode: "tozero" },
        yaxis2: { overlaying: "y", side: "right", tickformat: ".1%", rangemode: "tozero", showgrid: false },
      }),
    );
  }

  function renderEvents(list) {
    const rows = list.events.map((e) =>
      el(
        "tr",
        { "data-event-id": e.event_id },
        el("td", {}, formatTime(e.ts)),
        el("td", {}, e.store_id),
        el("td", {}, e.device_id),
        el("td", { class: `action-${e.action}` }, e.action),
        el("td", {}, modelLabel(e.model_name, e.model_version)),
        el("td", {}, e.reason || ""),
      ),
    );
    fillRows(document.querySelector("#model-events tbody"), rows, 6, "No model events in this window.");
  }

  const METRIC_FORMAT = { error_rate: formats.percent, wape: formats.percent, latency_p95: formats.ms };
  const METRIC_NAME = { error_rate: "Error rate", wape: "WAPE", latency_p95: "Latency p95" };
  // A latency finding measures the share of slow inferences, not milliseconds.
  const FINDING_UNIT = { latency_p95: " slow" };

  function versionLabel(version) {
    return version === null || version === undefined ? "?" : `v${version}`;
  }

  function renderRolloutIncident(inc) {
    const gates = inc.failed_gates.map((g) =>
      el("li", { "data-gate": g.name }, `${g.name}: ${g.detail}`),
    );
    return el(
      "div",
      { class: "incident", "data-kind": "rollout", "data-deployment-id": inc.deployment_id },
      el(
        "div",
        { class: "incident-title" },
        `Rollout ${inc.action}: deployment ${inc.deployment_id}, ${inc.model} ` +
          `${versionLabel(inc.candidate_version)} → ${versionLabel(inc.control_version)}`,
      ),
      el("div", { class: "muted" }, `${formatTime(inc.decided_at)} by ${inc.decided_by}`),
      el("p", {}, inc.reason),
      gates.length ? el("ul", {}, ...gates) : el("p", { class: "empty" }, "No gate failed."),
    );
  }

  function renderIncidents(list) {
    const box = document.getElementById("incidents");
    if (list.incidents.length === 0) {
      box.replaceChildren(el("p", { class: "empty" }, "No incidents: every metric is within its threshold."));
      return;
    }
    box.replaceChildren(
      ...list.incidents.map((inc) => {
        if (inc.kind === "rollout") return renderRolloutIncident(inc);
        const fmt = METRIC_FORMAT[inc.metric] || formats.count;
        const unit = FINDING_UNIT[inc.metric] || "";
        const findings = inc.findings.slice(0, 5).map((f) =>
          el(
            "li",
            { "data-dimension": f.dimension, "data-value": f.value },
            `${f.dimension} = ${f.value}: ${formats.percent(f.share_of_excess)} of the excess ` +
              `(${formats.percent(f.share_of_volume)} of volume; ` +
              `${formats.percent(f.window_value)}${unit} vs ${formats.percent(f.baseline_value)}${unit} before)`,
          ),
        );
        return el(
          "div",
          { class: "incident", "data-kind": "anomaly", "data-metric": inc.metric },
          el(
            "div",
            { class: "incident-title" },
            `${METRIC_NAME[inc.metric] || inc.metric} ${fmt(inc.window_value)} ` +
              `(baseline ${fmt(inc.baseline_value)}, threshold ${fmt(inc.threshold)})`,
          ),
          el("div", { class: "muted" }, `${formatTime(inc.window.start)} – ${formatTime(inc.window.end)}`),
          findings.length ? el("ol", {}, ...findings) : el("p", { class: "empty" }, "No single cause stands out."),
        );
      }),
    );
  }

  function renderRollouts(list) {
    const rows = list.rollouts.map((r) => {
      const d = r.latest_decision;
      const arms = r.arms.map((a) => `${a.arm}: ${versionLabel(a.version)}${a.alias ? ` (${a.alias})` : ""}`);
      const step = isNum(r.step_index) && r.steps.length ? `${r.step_index + 1} / ${r.steps.length}` : DASH;
      return el(
        "tr",
        { "data-deployment-id": r.deployment_id, "data-status": r.status },
        el("td", {}, String(r.deployment_id)),
        el("td", {}, r.model),
        el("td", {}, arms.join(", ") || DASH),
        el("td", {}, el("span", { class: `badge badge-${r.status}` }, r.status)),
        el("td", { class: "num" }, step),
        el("td", { class: "num" }, isNum(r.percent) ? `${r.percent}%` : DASH),
        el("td", { class: d ? `action-${d.action}` : "", title: d ? d.reason : "" }, d ? `${d.action}: ${d.reason}` : DASH),
        el("td", {}, d ? formatTime(d.decided_at) : DASH),
      );
    });
    fillRows(document.querySelector("#rollouts tbody"), rows, 8, "No canary deployments in force.");
  }

  // -- refresh loop ------------------------------------------------------------------------

  function showErrors(messages) {
    const box = document.getElementById("errors");
    box.hidden = messages.length === 0;
    box.replaceChildren(...messages.map((m) => el("div", {}, m)));
  }

  const SECTIONS = [
    ["/fleet", renderTiles],
    ["/stores", renderStores],
    ["/models", renderModels],
    ["/fleet/series", renderSeries],
    ["/model-events?limit=20", renderEvents],
    ["/incidents", renderIncidents],
    ["/rollouts", renderRollouts],
  ];

  async function refresh() {
    clearTimeout(timer);
    if (running || leaving) return; // the refresh in flight reschedules itself
    if (document.hidden) {
      timer = setTimeout(refresh, REFRESH_MS); // nobody is looking: refresh on return
      return;
    }
    running = true;
    try {
      await refreshAll();
    } finally {
      running = false;
      if (!leaving) timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  async function refreshAll() {
    const results = await Promise.allSettled(
      SECTIONS.map(async ([path, render]) => render(await api(path))),
    );
    results.push(...(await Promise.allSettled([renderStoreChart()])));
    if (leaving) return;
    const failures = results
      .filter((r) => r.status === "rejected")
      .map((r) => (r.reason instanceof Error ? r.reason.message : String(r.reason)));
    showErrors(failures);
    refreshes += 1;
    body.dataset.refreshes = String(refreshes);
    body.dataset.state = failures.length ? "error" : "ready";
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
  }

  document.getElementById("store-select").addEventListener("change", async (event) => {
    selectedStore = event.target.value;
    body.dataset.state = "loading";
    try {
      await renderStoreChart();
      body.dataset.state = "ready";
    } catch (error) {
      showErrors([error instanceof Error ? error.message : String(error)]);
      body.dataset.state = "error";
    }
  });

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refresh();
  });

  refresh();
})();
