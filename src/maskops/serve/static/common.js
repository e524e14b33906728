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

  // Draw faces on a 2D context; scale maps image pixels to canvas pixels.
  function drawFaces(ctx, faces, scale) {
    const lw = Math.max(2, Math.round(ctx.canvas.width / 300));
    ctx.lineWidth = lw;
    ctx.font = `${Math.max(12, Math.round(ctx.canvas.width / 45))}px system-ui, sans-serif`;
    ctx.textBaseline = "bottom";
    for (const f of faces) {
      const [x1, y1, x2, y2] = f.box.map((v) => v * scale);
      const c = color(f.label);
      ctx.strokeStyle = c;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const text = `${f.label} ${(f.confidence * 100).toFixed(0)}%`;
      const tw = ctx.measureText(text).width + 6;
      const th = parseInt(ctx.font, 10) + 4;
      const ty = y1 - th >= 0 ? y1 : y2 + th;
      ctx.fillStyle = c;
      ctx.fillRect(x1 - lw / 2, ty - th, tw, th);
      ctx.fillStyle = "#fff";
      ctx.fillText(text, x1 + 3 - lw / 2, ty - 2);
    }
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
  return { apiKey, headers, errorText, color, drawFaces, chips };
})();
