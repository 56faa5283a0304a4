// The live canvas (runs as gr.HTML js_on_load; `element` and `server` are given by Gradio).
// Streams JPEG snapshots while drawing (at most one request in flight, at most every THROTTLE_MS), sends the
// pen-up snapshot at once, drops replies older than the shown frame, and sends nothing when nothing changed.
// Transport: binary frames on the app's WebSocket (ui/live_socket.py); Gradio's server function (JSON, data URLs)
// while the socket is not open.
const THROTTLE_MS = 30;
const BACKGROUND_THROTTLE_MS = 250;  // mid-stroke frames of a tab the person is not drawing in (the device is
// left to the one they are)
const SOCKET_PATH = "/sketchsprint/live";
const STORE_PREFIX = "sketchsprint.canvas.";  // + this tab's id: each tab keeps its own drawing
const STORE_INDEX = "sketchsprint.canvases";  // tab id -> last save time, to drop the drawings of long-closed tabs
const STORE_TABS = 8;
const UNDO_LIMIT = 50;
const REPLY_TIMEOUT_MS = 130000;  // a request with no reply by then is given up, and the HUD says so (the server
// answers every request within 120 s, so only a lost reply gets here)
const WAIT_NOTICE_MS = 5000;  // a reply slower than this (a model loading, a busy machine) frees the pen's next
// frame and the HUD says what it waits for
const HISTORY_SETTLE_MS = 1500;  // a settings change goes to the history once the settings rest this long

const canvas = element.querySelector("#ss-canvas");
const ctx = canvas.getContext("2d", { willReadFrequently: true });
const out = element.querySelector("#ss-output");
const outCtx = out.getContext("2d");
const hud = element.querySelector("#ss-hud");
const notice = element.querySelector("#ss-notice");

function randomId() {
  return Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
}
// A server session is one page load (its seq starts at 1, so it must never meet an older page's seq); the drawing
// belongs to the tab (sessionStorage survives this tab's reloads and is not shared with other tabs).
const sessionId = randomId();
const tabId = (() => {
  let id = sessionStorage.getItem("sketchsprint.tab");
  if (!id) { id = randomId(); sessionStorage.setItem("sketchsprint.tab", id); }
  return id;
})();

const state = {
  tool: "brush", color: "#000000", size: 6, drawing: false, last: null,
  editVersion: 0, sentVersion: -1, paramsVersion: 0, sentParamsVersion: -1,
  seq: 0, shownSeq: 0, inFlight: 0, deferred: null, lastSend: 0, lastEditTime: 0, settleTimer: 0, paramsPushes: 0,
  params: { prompt: "", seed: 0, lock: true, refine: false, steps: 1, strength: 1.0, resolution: 512, model: "" },
  undo: [], redo: [],
};
const stats = {
  sent: 0, answered: 0, frames: 0, stale: 0, errors: 0, timeouts: 0,
  s2p: [], engine: [], breakdown: [], transport: "http",
};
const replyTimeout = { ms: REPLY_TIMEOUT_MS };  // tests shorten it through window.__ss

// ---- transport ---------------------------------------------------------------------------------------------------
const socket = { ws: null, pending: new Map(), retry: 0 };
const utf8 = new TextEncoder();

function connectSocket() {
  let ws;
  try {
    const url = new URL(SOCKET_PATH, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(url);
  } catch (e) { return; }
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { socket.ws = ws; socket.retry = 0; stats.transport = "socket"; };
  ws.onmessage = (ev) => {
    const receivedAt = performance.timeOrigin + performance.now();  // epoch ms, the clock of the server's send_at
    const view = new DataView(ev.data);
    const size = view.getUint32(0);
    const res = JSON.parse(new TextDecoder().decode(new Uint8Array(ev.data, 4, size)));
    if (ev.data.byteLength > 4 + size) res.bytes = new Uint8Array(ev.data, 4 + size);
    res.received_at = receivedAt;
    const waiter = socket.pending.get(res.seq);
    if (waiter) { socket.pending.delete(res.seq); waiter(res); }
  };
  ws.onclose = () => {
    if (socket.ws === ws) socket.ws = null;
    stats.transport = "http";
    for (const waiter of socket.pending.values()) waiter({ status: "lost" });  // re-sent over HTTP by the caller
    socket.pending.clear();
    socket.retry = Math.min(socket.retry + 1, 5);
    setTimeout(connectSocket, 200 * 2 ** socket.retry);
  };
}

function foreground() {
  // The tab the person draws in is served first; `window.__ss.foreground` overrides (a benchmark simulating tabs the
  // browser would report as hidden or unfocused, which headless Chromium cannot).
  if (window.__ss && typeof window.__ss.foreground === "boolean") return window.__ss.foreground;
  return document.visibilityState === "visible" && document.hasFocus();
}

function throttleMs() {
  return foreground() ? THROTTLE_MS : BACKGROUND_THROTTLE_MS;
}

function withTimeout(promise, seq, onTimeout) {
  // The reply, or {status: "timeout"} after replyTimeout.ms: one lost reply must not stop the frames for good.
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(() => { onTimeout(); resolve({ seq, status: "timeout" }); }, replyTimeout.ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

async function generate(payload, snap) {
  // One snapshot to the server: on the socket when it is open, else (or if it drops meanwhile) over HTTP.
  const ws = socket.ws;
  if (ws && ws.readyState === WebSocket.OPEN) {
    const head = utf8.encode(JSON.stringify(payload));
    const message = new Uint8Array(4 + head.length + snap.bytes.length);
    new DataView(message.buffer).setUint32(0, head.length);
    message.set(head, 4);
    message.set(snap.bytes, 4 + head.length);
    let sentAt = 0;
    const reply = new Promise((resolve) => {
      socket.pending.set(payload.seq, resolve);
      sentAt = performance.timeOrigin + performance.now();
      ws.send(message);
    });
    const res = await withTimeout(reply, payload.seq, () => socket.pending.delete(payload.seq));
    if (res.status !== "lost") return { ...res, sent_at: sentAt };
  }
  return withTimeout(server.live_generate({ ...payload, image: snap.url }), payload.seq, () => {});
}

function socketLegs(res, t2) {
  // Where a socket round trip went, from the page's and the server's epoch clocks (the same clock on one machine):
  // uplink (page send -> server receive), dispatch (waiting for a worker thread and the event loop, outside the
  // server's own timer), downlink (server send -> page handler) and handler (page handler -> this code).
  if (!res.sent_at || !res.recv_at || !res.send_at || !res.received_at) return {};
  const now = performance.timeOrigin + t2;
  return {
    uplink: res.recv_at - res.sent_at, dispatch: res.send_at - res.recv_at - (res.server_ms || 0),
    downlink: res.received_at - res.send_at, handler: now - res.received_at,
  };
}

async function decodeFrame(res) {
  // The reply's frame -> something drawImage takes: socket bytes decode off the main thread (createImageBitmap),
  // HTTP data URLs through an <img>.
  if (res.bytes) return createImageBitmap(new Blob([res.bytes], { type: res.mime || "image/jpeg" }));
  const img = new Image();
  img.src = res.image;
  await img.decode();
  return img;
}

function paintFrame(image) {
  const w = image.width, h = image.height;
  if (out.width !== w || out.height !== h) { out.width = w; out.height = h; }
  outCtx.drawImage(image, 0, 0);
}

function release(image) {
  if (image && image.close) image.close();  // an ImageBitmap's memory goes back at once
}

function fillWhite() {
  ctx.save();
  ctx.globalCompositeOperation = "source-over";
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.restore();
}

function save() {
  // This tab's drawing under its own key; only the STORE_TABS most recently saved tabs keep theirs.
  try {
    localStorage.setItem(STORE_PREFIX + tabId, canvas.toDataURL("image/png"));
    const index = JSON.parse(localStorage.getItem(STORE_INDEX) || "{}");
    index[tabId] = Date.now();
    const old = Object.keys(index).sort((a, b) => index[b] - index[a]).slice(STORE_TABS);
    for (const id of old) { localStorage.removeItem(STORE_PREFIX + id); delete index[id]; }
    localStorage.setItem(STORE_INDEX, JSON.stringify(index));
  } catch (e) { /* storage full or off: keep drawing */ }
}

function restore() {
  fillWhite();
  let data = null;
  try { data = localStorage.getItem(STORE_PREFIX + tabId); } catch (e) { /* storage off */ }
  if (!data) return;
  const img = new Image();
  img.onload = () => { ctx.drawImage(img, 0, 0, canvas.width, canvas.height); edited(); send(true, false); };
  img.src = data;
}

function pushUndo() {
  state.undo.push(ctx.getImageData(0, 0, canvas.width, canvas.height));
  if (state.undo.length > UNDO_LIMIT) state.undo.shift();
  state.redo = [];
}

function edited() {
  state.editVersion += 1;
  state.lastEditTime = performance.now();
}

function point(ev) {
  const r = canvas.getBoundingClientRect();
  return { x: (ev.clientX - r.left) * canvas.width / r.width, y: (ev.clientY - r.top) * canvas.height / r.height };
}

function stroke(a, b) {
  ctx.strokeStyle = state.tool === "eraser" ? "#ffffff" : state.color;
  ctx.lineWidth = state.tool === "eraser" ? state.size * 3 : state.size;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x + 0.01, b.y);
  ctx.stroke();
}

canvas.addEventListener("pointerdown", (ev) => {
  try {
    canvas.setPointerCapture(ev.pointerId);  // strokes that leave the canvas keep drawing
  } catch (error) {
    // a pointer that is already gone (a pen lifted at once, a synthetic event): draw without capture
  }
  clearTimeout(state.settleTimer);  // the stroke's pen-up frame goes to the history instead
  pushUndo();
  state.drawing = true;
  state.last = point(ev);
  stroke(state.last, state.last);
  edited();
});
canvas.addEventListener("pointermove", (ev) => {
  if (!state.drawing) return;
  const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
  for (const e of events.length ? events : [ev]) {
    const p = point(e);
    stroke(state.last, p);
    state.last = p;
  }
  edited();
  if (state.inFlight === 0 && performance.now() - state.lastSend >= throttleMs()) send(false);
});
function penUp() {
  if (!state.drawing) return;
  state.drawing = false;
  if (!state.params.lock) newSeed();
  save();
  send(true, true, true);  // forced: the stroke goes to the history even when its last mid-stroke frame showed it all
}

function newSeed() {
  // "Lock seed" off: a new seed per stroke, shown in the Seed box so the person sees (and can keep) what drew it.
  state.params.seed = Math.floor(Math.random() * 2147483647);
  state.paramsVersion += 1;
  const box = document.querySelector("#ss-seed input");
  if (box) {
    box.value = String(state.params.seed);
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.dispatchEvent(new Event("change", { bubbles: true }));
  }
}
canvas.addEventListener("pointerup", penUp);
canvas.addEventListener("pointercancel", penUp);

function setTool(tool) {
  state.tool = tool;
  element.querySelectorAll("[data-tool]").forEach((b) => b.classList.toggle("active", b.dataset.tool === tool));
}
function undo() {
  if (!state.undo.length) return;
  state.redo.push(ctx.getImageData(0, 0, canvas.width, canvas.height));
  ctx.putImageData(state.undo.pop(), 0, 0);
  edited(); save(); send(true);
}
function redo() {
  if (!state.redo.length) return;
  state.undo.push(ctx.getImageData(0, 0, canvas.width, canvas.height));
  ctx.putImageData(state.redo.pop(), 0, 0);
  edited(); save(); send(true);
}
function clearCanvas() {
  pushUndo(); fillWhite(); edited(); save(); send(true);
}
function setSize(size) {
  state.size = Math.max(1, Math.min(64, size));
  element.querySelector("#ss-size").value = state.size;
}

element.querySelectorAll("[data-color]").forEach((b) => b.addEventListener("click", () => {
  state.color = b.dataset.color; setTool("brush");
  element.querySelectorAll("[data-color]").forEach((c) => c.classList.toggle("active", c === b));
}));
element.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
element.querySelector("#ss-size").addEventListener("input", (ev) => setSize(Number(ev.target.value)));
element.querySelector("#ss-undo").addEventListener("click", undo);
element.querySelector("#ss-redo").addEventListener("click", redo);
element.querySelector("#ss-clear").addEventListener("click", clearCanvas);

document.addEventListener("keydown", (ev) => {
  const tag = (ev.target && ev.target.tagName) || "";
  if (["INPUT", "TEXTAREA", "SELECT"].includes(tag) || ev.target.isContentEditable) return;
  const mod = ev.ctrlKey || ev.metaKey;
  if (mod && ev.key.toLowerCase() === "z") { ev.preventDefault(); ev.shiftKey ? redo() : undo(); }
  else if (mod && ev.key.toLowerCase() === "y") { ev.preventDefault(); redo(); }
  else if (!mod && ev.key === "b") setTool("brush");
  else if (!mod && ev.key === "e") setTool("eraser");
  else if (!mod && ev.key === "[") setSize(state.size - 2);
  else if (!mod && ev.key === "]") setSize(state.size + 2);
});

function median(xs) {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function showTimeout(seq) {
  stats.timeouts += 1;
  const s = (replyTimeout.ms / 1000).toFixed(0);
  notice.textContent = `no reply to frame #${seq} within ${s} s: the server is busy or unreachable; still drawing`;
  notice.classList.add("error");
  hud.textContent = `frame #${seq}: no reply within ${s} s (timeouts ${stats.timeouts}) · ${stats.transport}`;
}

function showHud(res, s2p) {
  const t = res.timings || {};
  const stages = ["preprocess", "prompt", "control", "denoise", "decode", "encode"]
    .filter((k) => t[k] !== undefined).map((k) => `${k} ${t[k].toFixed(1)}`).join(" · ");
  const recent = stats.s2p.slice(-30);
  hud.textContent = `stroke→pixel ${s2p.toFixed(0)} ms (p50 ${median(recent).toFixed(0)}) · engine ` +
    `${(t.total || 0).toFixed(1)} ms [${stages}] · queue ${(res.queue_ms || 0).toFixed(1)} ms · ` +
    `stale dropped ${stats.stale} · ${stats.transport} · frame #${res.seq}`;
}

async function send(final, history = final, force = false) {
  // final: send now even if a request is in flight (pen-up, undo, settings); history: keep the frame in the history
  // strip; force: send although nothing changed (a settled settings change going to the history).
  const changed = state.editVersion !== state.sentVersion || state.paramsVersion !== state.sentParamsVersion;
  if ((!changed && !force) || !state.params.model) return;
  if (state.inFlight > 0 && final && !foreground()) {
    // A tab the person is not drawing in keeps one request in flight: its latest pen-up goes when the reply comes
    // (the server would answer the older one "stale" anyway, after both were encoded, sent and decoded).
    state.deferred = { history: history || (state.deferred !== null && state.deferred.history), force };
    return;
  }
  if (!final && state.inFlight > 0) return;
  state.seq += 1;
  const seq = state.seq;
  const editTime = state.lastEditTime;
  state.sentVersion = state.editVersion;
  state.sentParamsVersion = state.paramsVersion;
  state.lastSend = performance.now();
  state.inFlight += 1;
  let released = false;  // a slow reply stops holding back the frames of the pen that keeps moving
  const slow = setTimeout(() => {
    released = true;
    state.inFlight -= 1;
    if (seq > state.shownSeq) notice.textContent = `waiting for frame #${seq} (a model may be loading)…`;
  }, Math.min(WAIT_NOTICE_MS, replyTimeout.ms));
  const t0 = performance.now();
  let res, t1 = t0;
  try {
    const image = snapshot(Number(state.params.resolution) || canvas.width);
    t1 = performance.now();
    stats.sent += 1;
    const head = { session: sessionId, seq, final, history, foreground: foreground(), params: state.params };
    res = await generate(head, image);
    if (res.status !== "timeout") stats.answered += 1;
  } catch (e) {
    res = { seq, status: "error", message: String(e) };
  } finally {
    clearTimeout(slow);
    if (!released) state.inFlight -= 1;
  }
  if (state.drawing && state.editVersion !== state.sentVersion && foreground()) send(false);  // catch up at once
  if (state.deferred !== null && state.inFlight === 0) {
    const deferred = state.deferred;
    state.deferred = null;
    send(true, deferred.history, deferred.force);
  }
  const t2 = performance.now();
  if (res.status === "timeout") { if (seq > state.shownSeq) showTimeout(seq); return; }
  if (res.status === "stale" || seq < state.shownSeq) { stats.stale += 1; return; }
  if (res.status === "error") {
    stats.errors += 1;
    notice.textContent = res.message;
    notice.classList.add("error");
    return;
  }
  state.shownSeq = seq;
  notice.textContent = res.message || "";
  notice.classList.remove("error");
  let image;
  try { image = await decodeFrame(res); } catch (e) { stats.errors += 1; notice.textContent = `bad frame: ${e}`; return; }
  const t3 = performance.now();
  if (seq !== state.shownSeq) { release(image); return; }  // a newer frame was decoded first
  paintFrame(image);
  release(image);
  await new Promise((r) => requestAnimationFrame(() => r()));
  if (seq !== state.shownSeq) return;
  const painted = performance.now();
  out.dataset.seq = String(seq);
  const s2p = painted - (editTime || t0);
  const engineMs = (res.timings && res.timings.host_total) || 0;
  stats.frames += 1;
  stats.s2p.push(s2p);
  stats.engine.push(engineMs);
  stats.breakdown.push({
    seq, final, s2p, encode_browser: t1 - t0, round_trip: t2 - t1, server_total: res.server_ms || 0,
    queue: res.queue_ms || 0, engine: engineMs, encode_server: (res.timings && res.timings.encode) || 0,
    paint: painted - t2, decode: t3 - t2, edit_to_send: t0 - (editTime || t0), ipc: (res.timings && res.timings.ipc) || 0,
    ...socketLegs(res, t2),
  });
  showHud(res, s2p);
  if (final && state.params.refine) refine(seq);
}

async function refine(seq) {
  // The multi-step teacher pass for the frame just shown; dropped if the person drew again meanwhile.
  notice.textContent = "refining…";
  let res;
  try { res = await server.live_refine({ session: sessionId, seq }); } catch (e) { res = { status: "error", message: String(e) }; }
  if (seq !== state.shownSeq || state.drawing) return;
  if (res.status === "error") { notice.textContent = res.message; notice.classList.add("error"); return; }
  if (res.status !== "ok" && res.status !== "cached") { notice.textContent = ""; return; }
  let image;
  try { image = await decodeFrame(res); } catch (e) { return; }
  if (seq !== state.shownSeq || state.drawing) { release(image); return; }
  paintFrame(image);
  release(image);
  notice.textContent = `refined (${((res.timings && res.timings.total) || 0).toFixed(0)} ms)`;
}

const small = document.createElement("canvas");
function snapshot(size) {
  // Send what the model will see: a snapshot at the generation size is smaller to encode, upload and decode.
  let source = canvas, quality = 0.85;
  if (size < canvas.width) {
    small.width = size;
    small.height = size;
    const sctx = small.getContext("2d");
    sctx.imageSmoothingQuality = "high";
    sctx.drawImage(canvas, 0, 0, size, size);
    source = small;
    quality = 0.9;
  }
  // toDataURL encodes at once; toBlob's asynchronous encode measured ~10 ms slower per frame here
  const url = source.toDataURL("image/jpeg", quality);
  const binary = atob(url.slice(url.indexOf(",") + 1));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return { url, bytes };
}

function tick() {
  if (state.drawing && performance.now() - state.lastSend >= throttleMs()) send(false);
  requestAnimationFrame(tick);
}

window.__ss = {
  session: sessionId,
  stats,
  setParams(p) {
    const next = { ...state.params, ...p };
    if (JSON.stringify(next) === JSON.stringify(state.params)) return;
    state.params = next;
    state.paramsVersion += 1;
    state.lastEditTime = performance.now();  // stroke->pixel of this frame counts from the change, not the last stroke
    send(true, false);
    clearTimeout(state.settleTimer);  // a prompt typed key by key goes to the history once, when typing rests (the
    // page's first push of its settings is not a change)
    if (state.paramsPushes++ > 0) state.settleTimer = setTimeout(() => send(true, true, true), HISTORY_SETTLE_MS);
  },
  loadImage(url) {
    const img = new Image();
    img.crossOrigin = "anonymous";
    img.onload = () => {
      pushUndo(); fillWhite();
      const s = Math.min(canvas.width / img.width, canvas.height / img.height);
      const w = img.width * s, h = img.height * s;
      ctx.drawImage(img, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
      edited(); save(); send(true);
    };
    img.src = url;
  },
  clear: clearCanvas, undo, redo, replyTimeout, tab: tabId,
  sketch: () => canvas.toDataURL("image/png"),
  frame: () => out.toDataURL("image/png"),  // the shown output, for tests and debugging
};
if (window.__ssPending) { window.__ss.setParams(window.__ssPending); window.__ssPending = null; }
connectSocket();
restore();
requestAnimationFrame(tick);
