// Shared by the pages: API key (kept in this browser only), error text, colours, box drawing.
"use strict";

const MaskOps = (() => {
  const KEY = "maskops.apiKey";
  const COLORS = {
    with_mask: "#3cb44b",
    without_mask: "#e63030",
    mask_weared_incorrect: "#ff8c00",
    uncertain: "#a0a0a0",
  };

  function apiKey() {
    return localStorage.getItem(KEY) || "";
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const k = apiKey();
    if (k) h["X-API-Key"] = k;
    return h;
  }

  // The API always answers errors as {"error": {"code", "message", ...}}.
  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && body.error) return `${body.error.message} (${body.error.code}, HTTP ${response.status})`;
    } catch (e) {
      /* not JSON */
    }
    return `HTTP ${response.status} ${response.statusText}`;
  }

  function color(label) {
    return COLORS[label] || "#1f77b4";
  }

  // The text of a face's tag: the class and its confidence, or for an uncertain face why it is
  // uncertain (its guess's confidence would read as certainty).
  function faceText(f) {
    if (f.label === "uncertain") {
      const reason = (f.uncertain_reason || "").split(" (")[0];
      return reason ? `uncertain: ${reason}` : "uncertain";
    }
    return `${f.label} ${(f.confidence * 100).toFixed(0)}%`;
  }

  function overlaps(a, b) {
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  }

  // Where a w x h tag goes for a box: above it, else below, else inside its top; always inside
  // the canvas, and clear of the tags already placed (moved down, then up, until it is).
  function placeTag(box, w, h, width, height, placed) {
    const [x1, y1, x2, y2] = box;
    const x = Math.max(0, Math.min(x1, width - w));
    const fits = (y) => y >= 0 && y + h <= height;
    const free = (r) => !placed.some((p) => overlaps(r, p));
    const candidates = [y1 - h, y2, y1].filter(fits);
    if (!candidates.length) candidates.push(Math.max(0, Math.min(y1, height - h)));
    for (const y of candidates) {
      const r = { x, y, w, h };
      if (free(r)) return r;
    }
    const start = candidates[0];
    for (let step = 1; step * h <= height; step++) {
      for (const y of [start + step * h, start - step * h]) {
        const r = { x, y, w, h };
        if (fits(y) && free(r)) return r;
      }
    }
    return { x, y: start, w, h }; // more tags than room: overlap rather than leave one out
  }

  // Draw faces on a 2D context; scale maps image pixels to canvas pixels. Returns the tags as
  // drawn ({text, x, y, w, h}), boxes first and tags on top so no box line crosses a tag.
  function drawFaces(ctx, faces, scale) {
    const { width, height } = ctx.canvas;
    const lw = Math.max(2, Math.round(width / 300));
    ctx.lineWidth = lw;
    ctx.font = `${Math.max(12, Math.round(width / 45))}px system-ui, sans-serif`;
    ctx.textBaseline = "bottom";
    const boxes = faces.map((f) => f.box.map((v) => v * scale));
    faces.forEach((f, i) => {
      const [x1, y1, x2, y2] = boxes[i];
      ctx.strokeStyle = color(f.label);
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    });
    const th = parseInt(ctx.font, 10) + 4;
    const tags = [];
    // top-to-bottom, left-to-right: the tags of a row of faces settle in reading order
    const order = faces.map((_, i) => i).sort((a, b) => boxes[a][1] - boxes[b][1] || boxes[a][0] - boxes[b][0]);
    for (const i of order) {
      const text = faceText(faces[i]);
      const tw = Math.min(width, ctx.measureText(text).width + 6);
      const r = placeTag(boxes[i], tw, th, width, height, tags);
      ctx.fillStyle = color(faces[i].label);
      ctx.fillRect(r.x, r.y, r.w, r.h);
      ctx.fillStyle = "#fff";
      ctx.fillText(text, r.x + 3, r.y + r.h - 2, r.w - 6);
      tags.push({ text, ...r });
    }
    return tags;
  }

  function chips(el, counts) {
    el.replaceChildren();
    for (const [label, n] of Object.entries(counts)) {
      if (!n) continue;
      const chip = document.createElement("span");
      chip.className = `chip ${label}`;
      chip.textContent = `${label.replaceAll("_", " ")}: ${n}`;
      chip.dataset.label = label;
      chip.dataset.count = n;
      el.append(chip);
    }
  }

  function setupKeyField() {
    const input = document.getElementById("apikey");
    if (!input) return;
    input.value = apiKey();
    input.addEventListener("change", () => {
      if (input.value.trim()) localStorage.setItem(KEY, input.value.trim());
      else localStorage.removeItem(KEY);
    });
  }

  document.addEventListener("DOMContentLoaded", setupKeyField);
  return { apiKey, headers, errorText, color, faceText, drawFaces, chips };
})();
