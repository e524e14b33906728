// The live page: webcam frames -> WS /v1/stream -> boxes over the video. One frame in flight.
"use strict";

(() => {
  const video = document.getElementById("video");
  const overlay = document.getElementById("overlay");
  const startBtn = document.getElementById("start");
  const stopBtn = document.getElementById("stop");
  const fpsEl = document.getElementById("fps");
  const framesEl = document.getElementById("frames");
  const latencyEl = document.getElementById("latency");
  const statusEl = document.getElementById("status");
  const countsEl = document.getElementById("counts");
  const uncertain = document.getElementById("uncertain");
  const grab = document.createElement("canvas");
  const MAX_WIDTH = 640;

  let stream = null;
  let ws = null;
  let inFlight = false;
  let processed = 0;
  let sentAt = 0;
  const doneTimes = [];

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.className = isError ? "error" : "muted";
  }

  function sendFrame() {
    if (!ws || ws.readyState !== WebSocket.OPEN || inFlight || video.readyState < 2) return;
    const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
    grab.width = Math.round(video.videoWidth * scale);
    grab.height = Math.round(video.videoHeight * scale);
    grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
    inFlight = true;
    grab.toBlob(
      (blob) => {
        if (!blob || !ws || ws.readyState !== WebSocket.OPEN) {
          inFlight = false;
          return;
        }
        sentAt = performance.now();
        blob.arrayBuffer().then((buf) => ws.send(buf));
      },
      "image/jpeg",
      0.75,
    );
  }

  function draw(msg) {
    overlay.width = video.videoWidth;
    overlay.height = video.videoHeight;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    MaskOps.drawFaces(ctx, msg.faces, overlay.width / msg.width);
    MaskOps.chips(countsEl, msg.counts);
  }

  function onMessage(ev) {
    const msg = JSON.parse(ev.data);
    if (msg.type === "result" || msg.type === "error") {
      inFlight = false;
      const now = performance.now();
      doneTimes.push(now);
      while (doneTimes.length && now - doneTimes[0] > 2000) doneTimes.shift();
      const fps = doneTimes.length > 1 ? ((doneTimes.length - 1) * 1000) / (now - doneTimes[0]) : 0;
      fpsEl.textContent = fps.toFixed(1);
      latencyEl.textContent = (now - sentAt).toFixed(0);
    }
    if (msg.type === "result") {
      processed += 1;
      framesEl.textContent = String(processed);
      draw(msg);
      setStatus(`${msg.faces.length} face(s) · model ${msg.model.name}@${msg.model.version}`);
    } else if (msg.type === "error") {
      setStatus(msg.error.message, true);
    }
    requestAnimationFrame(sendFrame);
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const params = new URLSearchParams({ uncertain: uncertain.checked });
    const key = MaskOps.apiKey();
    if (key) params.set("api_key", key);
    ws = new WebSocket(`${proto}://${location.host}/v1/stream?${params}`);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      setStatus("streaming");
      sendFrame();
    };
    ws.onmessage = onMessage;
    ws.onclose = (ev) => {
      inFlight = false;
      if (stream) setStatus(ev.reason ? `connection closed: ${ev.reason}` : "connection closed", true);
    };
  }

  async function start() {
    startBtn.disabled = true;
    setStatus("asking for the camera…");
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    } catch (e) {
      setStatus(`camera unavailable: ${e.message}`, true);
      startBtn.disabled = false;
      return;
    }
    video.srcObject = stream;
    await video.play().catch(() => {});
    stopBtn.disabled = false;
    connect();
  }

  function stop() {
    if (ws) ws.close();
    ws = null;
    if (stream) for (const t of stream.getTracks()) t.stop();
    stream = null;
    video.srcObject = null;
    startBtn.disabled = false;
    stopBtn.disabled = true;
    setStatus("camera off");
  }

  uncertain.addEventListener("change", () => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ uncertain: uncertain.checked }));
  });
  startBtn.addEventListener("click", start);
  stopBtn.addEventListener("click", stop);
})();
