// The upload page: each dropped file goes to POST /v1/detect; boxes are drawn on a canvas.
"use strict";

(() => {
  const drop = document.getElementById("drop");
  const picker = document.getElementById("picker");
  const results = document.getElementById("results");
  const summary = document.getElementById("summary");
  const download = document.getElementById("download");
  const minConfidence = document.getElementById("min-confidence");
  const minConfidenceValue = document.getElementById("min-confidence-value");
  const uncertain = document.getElementById("uncertain");
  const collected = [];
  const queue = [];
  let running = 0;
  const PARALLEL = 2;

  minConfidence.addEventListener(
    "input",
    () => (minConfidenceValue.textContent = Number(minConfidence.value).toFixed(2)),
  );

  function totals() {
    const sum = {};
    for (const r of collected) {
      if (!r.response || !r.response.counts) continue;
      for (const [k, v] of Object.entries(r.response.counts)) sum[k] = (sum[k] || 0) + v;
    }
    MaskOps.chips(summary, sum);
    download.disabled = collected.length === 0;
  }

  function card(file) {
    const el = document.createElement("section");
    el.className = "result";
    el.dataset.status = "pending";
    const h = document.createElement("h3");
    h.textContent = file.name;
    const status = document.createElement("p");
    status.className = "muted";
    status.textContent = "processing…";
    el.append(h, status);
    results.append(el);
    return { el, status };
  }

  function reject(view, file, message) {
    view.el.classList.add("reject");
    view.el.dataset.status = "rejected";
    view.status.className = "message";
    view.status.textContent = `Rejected: ${message}`;
    collected.push({ file: file.name, error: message });
    totals();
  }

  function imageFromFile(file) {
    return new Promise((resolve, reject) => {
      const url = URL.createObjectURL(file);
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("the browser cannot display this image"));
      img.src = url;
    });
  }

  // "with_mask — 97.1%"; an uncertain face gives its reason instead of its guess's confidence
  function describe(f) {
    return f.label === "uncertain"
      ? `uncertain — ${f.uncertain_reason || "no reason given"}`
      : `${f.label} — ${(f.confidence * 100).toFixed(1)}%`;
  }

  function show(view, file, img, body) {
    const canvas = document.createElement("canvas");
    const scale = Math.min(1, 900 / img.naturalWidth);
    canvas.width = Math.round(img.naturalWidth * scale);
    canvas.height = Math.round(img.naturalHeight * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    // the server decodes with EXIF orientation; scale by its size so the boxes line up
    const s = canvas.width / body.image.width;
    const tags = MaskOps.drawFaces(ctx, body.faces, s);
    canvas.dataset.tags = JSON.stringify(tags);
    canvas.addEventListener("mousemove", (ev) => {
      const r = canvas.getBoundingClientRect();
      const x = ((ev.clientX - r.left) * canvas.width) / r.width / s;
      const y = ((ev.clientY - r.top) * canvas.height) / r.height / s;
      const hit = body.faces.find((f) => x >= f.box[0] && x <= f.box[2] && y >= f.box[1] && y <= f.box[3]);
      canvas.title = hit ? describe(hit) : "";
    });
    const counts = document.createElement("div");
    counts.className = "counts";
    MaskOps.chips(counts, body.counts);
    const list = document.createElement("ol");
    list.className = "face-list";
    for (const f of body.faces) {
      const li = document.createElement("li");
      li.dataset.label = f.label;
      li.textContent = describe(f);
      li.style.color = MaskOps.color(f.label);
      list.append(li);
    }
    view.status.textContent = body.faces.length
      ? `${body.faces.length} face(s) · ${body.image.width}×${body.image.height} · model ${body.model.name}@${body.model.version}`
      : `no face found · ${body.image.width}×${body.image.height}`;
    view.el.dataset.status = "ok";
    view.el.dataset.faces = body.faces.length;
    view.el.insertBefore(canvas, view.status);
    view.el.append(counts, list);
  }

  async function process(file) {
    const view = card(file);
    const form = new FormData();
    form.append("file", file, file.name);
    const params = new URLSearchParams({ min_confidence: minConfidence.value, uncertain: uncertain.checked });
    let response;
    try {
      response = await fetch(`/v1/detect?${params}`, { method: "POST", body: form, headers: MaskOps.headers() });
    } catch (e) {
      reject(view, file, `network error: ${e.message}`);
      return;
    }
    if (!response.ok) {
      reject(view, file, await MaskOps.errorText(response));
      return;
    }
    const body = await response.json();
    collected.push({ file: file.name, response: body });
    totals();
    try {
      show(view, file, await imageFromFile(file), body);
    } catch (e) {
      view.status.textContent = `${body.faces.length} face(s); ${e.message}`;
      view.el.dataset.status = "ok";
    }
  }

  function pump() {
    while (running < PARALLEL && queue.length) {
      const file = queue.shift();
      running += 1;
      process(file).finally(() => {
        running -= 1;
        pump();
      });
    }
  }

  function add(files) {
    for (const f of files) queue.push(f);
    pump();
  }

  picker.addEventListener("change", () => {
    add(picker.files);
    picker.value = "";
  });
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.remove("over");
    });
  }
  drop.addEventListener("drop", (e) => add(e.dataTransfer.files));
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") picker.click();
  });

  download.addEventListener("click", () => {
    const blob = new Blob([JSON.stringify(collected, null, 2)], { type: "application/json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "maskops-results.json";
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  });
  document.getElementById("clear").addEventListener("click", () => {
    collected.length = 0;
    results.replaceChildren();
    totals();
  });
})();
