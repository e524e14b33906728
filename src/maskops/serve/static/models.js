// The models page: GET /v1/models, one table per loaded model card.
"use strict";

(() => {
  const box = document.getElementById("models");
  const overview = document.getElementById("overview");
  const unavailable = document.getElementById("unavailable");

  function fmt(value) {
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(4);
    if (Array.isArray(value)) return value.map(fmt).join(", ");
    if (value && typeof value === "object") return JSON.stringify(value);
    return value === null || value === undefined || value === "" ? "–" : String(value);
  }

  function row(table, key, value) {
    const tr = table.insertRow();
    const th = document.createElement("th");
    th.textContent = key;
    const td = tr.insertCell();
    td.textContent = fmt(value);
    tr.prepend(th);
  }

  function metricsOf(card) {
    // flat numeric metrics, e.g. {"test": {"accuracy": ...}} -> "test/accuracy"
    const out = [];
    const walk = (obj, prefix) => {
      for (const [k, v] of Object.entries(obj || {})) {
        const name = prefix ? `${prefix}/${k}` : k;
        if (typeof v === "number") out.push([name, v]);
        else if (v && typeof v === "object" && !Array.isArray(v) && prefix.split("/").length < 2) walk(v, name);
      }
    };
    walk(card.metrics, "");
    return out.slice(0, 24);
  }

  async function load() {
    const response = await fetch("/v1/models", { headers: MaskOps.headers() });
    if (!response.ok) {
      overview.className = "error";
      overview.textContent = await MaskOps.errorText(response);
      return;
    }
    const body = await response.json();
    overview.className = "muted";
    overview.textContent = `generation ${body.generation}, loaded ${body.loaded_at}; face detector ${body.detector}` +
      (body.detector_error ? ` (unavailable: ${body.detector_error})` : "");
    box.replaceChildren();
    for (const m of body.models) {
      const section = document.createElement("section");
      section.className = "model";
      section.dataset.name = m.name;
      const h = document.createElement("h2");
      h.textContent = `${m.name} (${m.role.replace("_", " ")})`;
      const table = document.createElement("table");
      const c = m.card;
      row(table, "version (sha256)", m.version);
      row(table, "task", c.task);
      row(table, "classes", c.class_names);
      row(table, "input size (h, w)", c.input_size);
      row(table, "architecture", c.architecture);
      row(table, "temperature", c.temperature);
      row(table, "thresholds", c.thresholds);
      row(table, "created", c.created_at);
      row(table, "git commit", c.git_commit);
      row(table, "data manifest", c.manifest_hash);
      row(table, "source", `${m.source}, loaded ${m.loaded_at}`);
      for (const [k, v] of metricsOf(c)) row(table, k, v);
      section.append(h, table);
      box.append(section);
    }
    unavailable.replaceChildren();
    for (const [name, reason] of Object.entries(body.unavailable || {})) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = `${name}: not loaded — ${reason}`;
      unavailable.append(p);
    }
    if (!body.models.length && !Object.keys(body.unavailable || {}).length) {
      unavailable.textContent = "No models in the models directory.";
    }
  }

  document.getElementById("refresh").addEventListener("click", load);
  load();
})();
