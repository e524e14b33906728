// The monitoring dashboard: GET /v1/monitor/{summary,checks,alerts,drift/latest}, drawn with the
// vendored Chart.js (/static/lib/chart.umd.min.js). Every canvas says how many values it drew in
// data-points once drawn; <body data-loads> counts the finished refreshes.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const charts = {};
  const PALETTE = ["#1f77b4", "#9467bd", "#17becf", "#bcbd22", "#8c564b", "#e377c2", "#7f7f7f", "#2ca02c"];
  const CLASS_ORDER = ["with_mask", "without_mask", "mask_weared_incorrect", "uncertain"];
  const REFRESH_MS = 30000;
  let timer = null;
  let loads = 0;
  const knownSites = new Set();

  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = "system-ui, sans-serif";

  function show(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "muted";
  }

  async function getJSON(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const qs = q.toString();
    const r = await fetch(qs ? `${path}?${qs}` : path, { headers: MaskOps.headers() });
    if (!r.ok) throw new Error(`${path}: ${await MaskOps.errorText(r)}`);
    return r.json();
  }

  // --- formatting
  const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);
  const num = (v) => {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    if (a >= 100) return v.toFixed(0);
    if (a >= 1) return v.toFixed(2);
    if (a === 0) return "0";
    return a < 0.001 ? v.toExponential(1) : v.toPrecision(2);
  };
  function bucketLabel(iso, bucket) {
    // the API's times are UTC; so are the labels
    const [date, time] = iso.replace("Z", "").split("T");
    return bucket === "day" ? date : `${date.slice(5)} ${time.slice(0, 5)}`;
  }
  const timeLabel = (iso) => (iso ? iso.replace("T", " ").replace(/:\d\d(\.\d+)?Z?$/, "") + " UTC" : "–");
  const siteName = (s) => (s === null || s === undefined ? "(untagged)" : s);

  function draw(id, config) {
    const canvas = $(id);
    if (charts[id]) charts[id].destroy();
    charts[id] = new Chart(canvas, config);
    const points = config.data.datasets.reduce(
      (n, d) => n + d.data.filter((v) => v !== null && v !== undefined && !(typeof v === "number" && isNaN(v))).length,
      0,
    );
    canvas.dataset.points = String(points);
    return charts[id];
  }

  function clearChart(id) {
    if (charts[id]) {
      charts[id].destroy();
      delete charts[id];
    }
    $(id).dataset.points = "0";
  }

  // --- summary: traffic, class mix, compliance, sites, review queue
  function renderSummary(body) {
    if (body.store !== "ok" || !body.traffic) {
      for (const id of ["chart-traffic", "chart-classes", "chart-compliance", "chart-sites"]) clearChart(id);
      $("traffic-note").textContent =
        body.store === "off"
          ? "The prediction store is off (MASKOPS_STORE_PREDICTIONS=false): no traffic is recorded."
          : "The prediction store does not answer right now.";
      $("sites-table").querySelector("tbody").replaceChildren();
      $("review-waiting").textContent = "–";
      return;
    }
    const t = body.traffic;
    const labels = t.buckets.map((b) => bucketLabel(b.bucket_start, t.bucket));
    draw("chart-traffic", {
      data: {
        labels,
        datasets: [
          { type: "bar", label: "requests", data: t.buckets.map((b) => b.requests), backgroundColor: "#9fb7cc", yAxisID: "y" },
          { type: "line", label: "p50 ms", data: t.buckets.map((b) => b.p50_ms), borderColor: "#14324a", backgroundColor: "#14324a", yAxisID: "ms", spanGaps: true, pointRadius: 2 },
          { type: "line", label: "p95 ms", data: t.buckets.map((b) => b.p95_ms), borderColor: "#e63030", backgroundColor: "#e63030", yAxisID: "ms", spanGaps: true, pointRadius: 2 },
        ],
      },
      options: {
        scales: {
          y: { beginAtZero: true, title: { display: true, text: "requests" } },
          ms: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "latency ms" } },
        },
      },
    });
    const tot = t.total;
    $("traffic-note").textContent =
      `${tot.requests} requests, ${tot.faces_total} faces from ${timeLabel(t.from)} to ${timeLabel(t.to)}; ` +
      `p50 ${num(tot.p50_ms)} ms, p95 ${num(tot.p95_ms)} ms; compliance ${pct(tot.compliance_rate)}.`;

    const classes = new Set(CLASS_ORDER);
    for (const b of t.buckets) for (const k of Object.keys(b.faces)) classes.add(k);
    draw("chart-classes", {
      type: "bar",
      data: {
        labels,
        datasets: Array.from(classes).map((c) => ({
          label: c,
          data: t.buckets.map((b) => b.faces[c] || 0),
          backgroundColor: MaskOps.color(c),
        })),
      },
      options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: "faces" } } } },
    });

    const lines = [
      { label: "all sites", data: t.buckets.map((b) => b.compliance_rate), borderColor: "#3cb44b", backgroundColor: "#3cb44b", borderWidth: 3 },
    ];
    if (!t.site && t.compliance_by_site.length > 1) {
      t.compliance_by_site.slice(0, PALETTE.length).forEach((s, i) => {
        lines.push({ label: siteName(s.site), data: s.compliance_rate, borderColor: PALETTE[i], backgroundColor: PALETTE[i], borderWidth: 1.5 });
      });
    }
    draw("chart-compliance", {
      type: "line",
      data: { labels, datasets: lines.map((d) => ({ spanGaps: true, pointRadius: 2, ...d })) },
      options: {
        scales: { y: { min: 0, max: 1, ticks: { callback: (v) => `${Math.round(v * 100)}%` }, title: { display: true, text: "with mask / classified faces" } } },
        plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${pct(c.parsed.y)}` } } },
      },
    });

    draw("chart-sites", {
      type: "bar",
      data: {
        labels: t.sites.map((s) => siteName(s.site)),
        datasets: Array.from(classes).map((c) => ({
          label: c,
          data: t.sites.map((s) => s.faces[c] || 0),
          backgroundColor: MaskOps.color(c),
        })),
      },
      options: {
        indexAxis: "y",
        scales: { x: { stacked: true, beginAtZero: true, title: { display: true, text: "faces" } }, y: { stacked: true } },
        plugins: { legend: { display: false } },
      },
    });

    const rows = t.sites.map((s) => {
      const tr = document.createElement("tr");
      tr.dataset.site = s.site === null ? "" : s.site;
      for (const v of [siteName(s.site), s.requests, s.faces_total, pct(s.compliance_rate), num(s.p50_ms), num(s.p95_ms)]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    });
    $("sites-table").querySelector("tbody").replaceChildren(...rows);
    if (!t.site) updateSites(t.sites.map((s) => s.site).filter((s) => s !== null));

    const q = body.review_queue;
    $("review-waiting").textContent = q ? String(q.waiting) : "–";
    $("review-note").textContent = q && !q.storing_crops
      ? "Hard cases are not being kept: start the server with MASKOPS_STORE_FACES=hard to fill the queue."
      : "";
  }

  function updateSites(sites) {
    const select = $("site");
    let added = false;
    for (const s of sites) {
      if (knownSites.has(s)) continue;
      knownSites.add(s);
      added = true;
    }
    if (!added) return;
    const current = select.value;
    const options = [new Option("all sites", "")];
    for (const s of Array.from(knownSites).sort()) options.push(new Option(s, s));
    select.replaceChildren(...options);
    select.value = current;
  }

  // --- checks: estimated against measured accuracy
  function renderChecks(body) {
    const checks = body.checks || [];
    const note = $("accuracy-note");
    if (body.store !== "ok") {
      clearChart("chart-accuracy");
      note.textContent = body.store === "off" ? "The prediction store is off." : "The prediction store does not answer right now.";
      return;
    }
    if (!checks.length) {
      clearChart("chart-accuracy");
      note.textContent = "No monitoring check yet: `maskops monitor run` (or the service's monitor task) writes one per window.";
      return;
    }
    const labels = checks.map((c) => timeLabel(c.created_at).replace(" UTC", "") + (c.site ? ` · ${c.site}` : ""));
    draw("chart-accuracy", {
      type: "line",
      data: {
        labels,
        datasets: [
          { label: "interval low", data: checks.map((c) => c.accuracy_low), borderColor: "rgba(31,119,180,.25)", pointRadius: 0, fill: false },
          { label: "interval high", data: checks.map((c) => c.accuracy_high), borderColor: "rgba(31,119,180,.25)", backgroundColor: "rgba(31,119,180,.15)", pointRadius: 0, fill: "-1" },
          { label: "estimated", data: checks.map((c) => c.expected_accuracy), borderColor: "#1f77b4", backgroundColor: "#1f77b4", pointRadius: 3 },
          { label: "measured", data: checks.map((c) => c.measured_accuracy), borderColor: "#e63030", backgroundColor: "#e63030", showLine: false, pointRadius: 5, pointStyle: "rectRot" },
          { label: "reference", data: checks.map((c) => c.reference_accuracy), borderColor: "#5f6b76", borderDash: [6, 4], pointRadius: 0 },
        ],
      },
      options: {
        spanGaps: true,
        scales: { y: { suggestedMin: 0.5, max: 1, ticks: { callback: (v) => `${Math.round(v * 100)}%` } } },
        plugins: {
          legend: { labels: { filter: (item) => !item.text.startsWith("interval") } },
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${pct(c.parsed.y)}` } },
        },
      },
    });
    const last = checks[checks.length - 1];
    const measured = last.measured_accuracy === null ? "no feedback in its window" : `measured ${pct(last.measured_accuracy)} on ${last.n_feedback} faces with feedback`;
    note.textContent =
      `Latest check ${timeLabel(last.created_at)}${last.site ? ` (${last.site})` : ""}: ${last.n_faces} faces, ` +
      `estimated ${pct(last.expected_accuracy)} [${pct(last.accuracy_low)}, ${pct(last.accuracy_high)}], ${measured}. ` +
      "The estimate assumes calibrated confidences: a model confidently wrong on a new kind of image is not caught by it.";
  }

  // --- alerts
  function alertItem(a, state, message) {
    const li = document.createElement("li");
    li.dataset.rule = a.rule;
    li.dataset.state = state;
    const badge = document.createElement("span");
    badge.className = `badge ${state}`;
    badge.textContent = state;
    const what = document.createElement("strong");
    what.textContent = ` ${a.rule}${a.key ? ` · ${a.key}` : ""} `;
    const when = document.createElement("span");
    when.className = "muted";
    when.textContent = state === "firing" && a.since ? `since ${timeLabel(a.since)}` : timeLabel(a.created_at);
    li.append(badge, what, when);
    if (message) {
      const p = document.createElement("div");
      p.textContent = message;
      li.append(p);
    }
    return li;
  }

  function renderAlerts(body) {
    const firing = $("alerts-firing");
    const events = $("alerts-events");
    const note = $("alerts-note");
    if (body.store !== "ok") {
      firing.replaceChildren();
      events.replaceChildren();
      note.textContent = body.store === "off" ? "The prediction store is off." : "The prediction store does not answer right now.";
      return;
    }
    const messages = {};
    for (const e of body.events.slice().reverse()) if (e.state === "firing") messages[e.incident_id] = e.message;
    firing.replaceChildren(...body.firing.map((a) => alertItem(a, "firing", messages[a.incident_id])));
    events.replaceChildren(...body.events.map((e) => alertItem(e, e.state, e.message)));
    note.textContent = body.firing.length
      ? `${body.firing.length} firing now.`
      : body.events.length ? "No alert firing." : "No alert firing, and none sent yet.";
    $("panel-alerts").dataset.firing = String(body.firing.length);
  }

  // --- drift
  function featureCard(f, index) {
    const div = document.createElement("div");
    const drifted = f.drifted || f.drifted_in_check;
    div.className = `feature${drifted ? " drifted" : ""}`;
    div.dataset.feature = f.feature;
    div.dataset.drifted = String(Boolean(drifted));
    const h = document.createElement("h3");
    h.textContent = `${f.feature} `;
    const badge = document.createElement("span");
    badge.className = `badge ${drifted ? "drifted" : "ok"}`;
    badge.textContent = drifted ? "drifted" : "no drift";
    h.append(badge);
    const p = document.createElement("div");
    p.className = "muted";
    const check = f.drifted_in_check === null || f.drifted_in_check === undefined ? "" : ` · latest check: ${f.drifted_in_check ? "drifted" : "no drift"}`;
    p.textContent = f.score === null && f.note ? `${f.test || ""}: ${f.note}${check}` : `${f.test || ""} ${num(f.score)} (threshold ${num(f.threshold)})${check}`;
    div.append(h, p);
    if (f.histogram) {
      const wrap = document.createElement("div");
      wrap.className = "chart small";
      const canvas = document.createElement("canvas");
      canvas.id = `chart-drift-${index}`;
      canvas.setAttribute("aria-label", `${f.feature}: reference and current distributions`);
      wrap.append(canvas);
      div.append(wrap);
    }
    return div;
  }

  function histogramLabels(hist) {
    if (hist.categories) return hist.categories;
    const e = hist.edges;
    return e.slice(0, -1).map((lo, i) => num((lo + e[i + 1]) / 2));
  }

  function renderDrift(body) {
    const box = $("drift-features");
    for (const id of Object.keys(charts)) if (id.startsWith("chart-drift-")) { charts[id].destroy(); delete charts[id]; }
    const notes = [];
    if (body.store !== "ok") notes.push(body.store === "off" ? "The prediction store is off." : "The prediction store does not answer right now.");
    if (body.reference && !body.reference.available && body.reference.note) notes.push(body.reference.note);
    if (body.check) notes.push(`Latest check ${timeLabel(body.check.created_at)}: ${body.check.drifted_features.length ? `drifted: ${body.check.drifted_features.join(", ")}` : "no feature drifted"}.`);
    else if (body.store === "ok") notes.push("No monitoring check yet.");
    if (body.window) {
      const w = body.window;
      notes.push(`Histograms: the ${w.last ? `latest ${w.faces} faces` : `requests since ${timeLabel(w.since)}`} (${w.requests} requests) against the reference profile.`);
    }
    $("drift-note").textContent = notes.join(" ");
    const features = body.features || [];
    box.replaceChildren(...features.map(featureCard));
    features.forEach((f, i) => {
      if (!f.histogram) return;
      draw(`chart-drift-${i}`, {
        type: "bar",
        data: {
          labels: histogramLabels(f.histogram),
          datasets: [
            { label: `reference (${f.histogram.n_reference})`, data: f.histogram.reference, backgroundColor: "rgba(95,107,118,.55)" },
            { label: `current (${f.histogram.n_current})`, data: f.histogram.current, backgroundColor: f.drifted || f.drifted_in_check ? "rgba(230,48,48,.7)" : "rgba(31,119,180,.7)" },
          ],
        },
        options: {
          scales: { x: { ticks: { maxRotation: 0, autoSkip: true, font: { size: 10 } } }, y: { beginAtZero: true, ticks: { callback: (v) => `${Math.round(v * 100)}%` } } },
          plugins: { legend: { labels: { boxWidth: 10, font: { size: 10 } } } },
        },
      });
    });
  }

  // --- refresh
  async function refresh() {
    const [from, bucket] = $("window").value.split("|");
    const site = $("site").value;
    show("loading…");
    const parts = [
      ["summary", () => getJSON("/v1/monitor/summary", { from, bucket, site }), renderSummary],
      ["checks", () => getJSON("/v1/monitor/checks", { from, site }), renderChecks],
      ["alerts", () => getJSON("/v1/monitor/alerts", { from }), renderAlerts],
      ["drift", () => getJSON("/v1/monitor/drift/latest", { site }), renderDrift],
    ];
    const results = await Promise.allSettled(parts.map(([, get]) => get()));
    const errors = [];
    let store = null;
    results.forEach((r, i) => {
      if (r.status === "fulfilled") {
        store = store || r.value.store;
        try {
          parts[i][2](r.value);
        } catch (e) {
          errors.push(`${parts[i][0]}: ${e.message}`);
        }
      } else {
        errors.push(r.reason.message);
      }
    });
    loads += 1;
    document.body.dataset.loads = String(loads);
    if (errors.length) show(errors.join(" · "), true);
    else if (store === "off") show("The prediction store is off (MASKOPS_STORE_PREDICTIONS=false): there is nothing to monitor.");
    else show(`updated ${new Date().toLocaleTimeString()}${store === "unavailable" ? " · the store does not answer" : ""}`);
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = $("auto").checked ? setInterval(refresh, REFRESH_MS) : null;
  }

  $("refresh").addEventListener("click", refresh);
  $("window").addEventListener("change", refresh);
  $("site").addEventListener("change", refresh);
  $("auto").addEventListener("change", schedule);
  document.addEventListener("DOMContentLoaded", () => {
    refresh();
    schedule();
  });
})();
