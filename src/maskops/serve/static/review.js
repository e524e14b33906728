// The review page: GET /v1/review/next, the crop, and an answer as POST /v1/feedback (origin review).
"use strict";

(() => {
  const status = document.getElementById("status");
  const box = document.getElementById("case");
  const crop = document.getElementById("crop");
  const guess = document.getElementById("guess");
  const reason = document.getElementById("reason");
  const probs = document.getElementById("probs");
  const buttons = Array.from(document.querySelectorAll("#answers button"));
  let current = null;
  let cropUrl = null;
  let busy = false;

  function show(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "muted";
  }

  async function load(after) {
    const q = after ? `?after_request_id=${encodeURIComponent(after.request_id)}&after_face_index=${after.face_index}` : "";
    const r = await fetch(`/v1/review/next${q}`, { headers: MaskOps.headers() });
    if (!r.ok) {
      show(await MaskOps.errorText(r), true);
      box.hidden = true;
      return;
    }
    const body = await r.json();
    current = body.case;
    if (!current) {
      box.hidden = true;
      show(body.storing_crops
        ? "Nothing to review: every kept hard case has an answer."
        : "Nothing to review. Start the server with MASKOPS_STORE_FACES=hard to keep crops of hard cases.");
      return;
    }
    const img = await fetch(current.crop_url, { headers: MaskOps.headers() });
    if (cropUrl) URL.revokeObjectURL(cropUrl);
    cropUrl = img.ok ? URL.createObjectURL(await img.blob()) : null;
    crop.src = cropUrl || "";
    guess.textContent = `${current.label} (${(current.confidence * 100).toFixed(0)}%)`;
    guess.style.color = MaskOps.color(current.label);
    reason.textContent = current.uncertain_reason ? `· ${current.uncertain_reason}` : "";
    probs.replaceChildren(...Object.entries(current.probabilities).map(([k, v]) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.style.background = MaskOps.color(k);
      chip.textContent = `${k} ${(v * 100).toFixed(0)}%`;
      return chip;
    }));
    box.hidden = false;
    show(`${body.waiting} waiting · request ${current.request_id}, face ${current.face_index}`);
  }

  async function answer(label) {
    if (!current || busy) return;
    busy = true;
    try {
      if (label) {
        const r = await fetch("/v1/feedback", {
          method: "POST",
          headers: MaskOps.headers({ "Content-Type": "application/json" }),
          body: JSON.stringify({
            request_id: current.request_id, face_index: current.face_index, label, origin: "review",
          }),
        });
        if (!r.ok) {
          show(await MaskOps.errorText(r), true);
          return;
        }
        await load(null);
      } else {
        await load(current);
      }
    } finally {
      busy = false;
    }
  }

  buttons.forEach((b) => b.addEventListener("click", () => answer(b.dataset.label)));
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement) return;
    const i = "12345".indexOf(e.key);
    if (i >= 0) answer(buttons[i].dataset.label);
  });
  load(null).catch((e) => show(String(e), true));
})();
