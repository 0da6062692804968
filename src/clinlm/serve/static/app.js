// clinlm web page: upload or record a sound, draw it, ask questions, stream the answers.
// Plain JS, no build step, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  maxTokens: 160,     // lowered to the server's limit from /health
  media: null,        // {kind: "audio"|"image", base64, format, name}
  messages: [],       // OpenAI-format conversation sent with every request
  mediaSent: false,   // the recording goes with the first question only
  recorder: null,
};

$("apikey").value = sessionStorage.getItem("clinlm-key") || "";
$("apikey").addEventListener("change", () => sessionStorage.setItem("clinlm-key", $("apikey").value));

function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("apikey").value) h["Authorization"] = "Bearer " + $("apikey").value;
  return h;
}

fetch("/health").then((r) => r.json()).then((h) => {
  state.maxTokens = Math.min(state.maxTokens, h.max_tokens || state.maxTokens);
  $("model-info").textContent = `model: ${h.model} · audio: ${h.audio ? "yes" : "no"} · images: ${h.vision ? "yes" : "no"}`;
}).catch(() => { $("model-info").textContent = "server not reachable"; });

function showError(msg) { $("error").textContent = msg || ""; }

// ---- media -----------------------------------------------------------------------------------

function toBase64(buf) {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function formatOf(name, mime) {
  const ext = (name.split(".").pop() || "").toLowerCase();
  if (["wav", "flac", "ogg", "oga", "opus", "mp3", "webm", "m4a", "mp4", "aac", "aif", "aiff"].includes(ext)) return ext;
  if (mime.includes("webm")) return "webm";
  if (mime.includes("ogg")) return "ogg";
  if (mime.includes("mp4")) return "mp4";
  return "wav";
}

async function useFile(blob, name) {
  showError("");
  const buf = await blob.arrayBuffer();
  const mime = blob.type || "";
  if (mime.startsWith("image/")) {
    state.media = { kind: "image", base64: toBase64(buf), format: mime, name };
    const img = $("image-preview");
    img.src = `data:${mime};base64,${state.media.base64}`;
    img.hidden = false;
    clearCanvas($("wave")); clearCanvas($("spec"));
  } else {
    state.media = { kind: "audio", base64: toBase64(buf), format: formatOf(name, mime), name };
    $("image-preview").hidden = true;
    const player = $("player");
    player.src = URL.createObjectURL(blob);
    player.hidden = false;
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      const audio = await ctx.decodeAudioData(buf.slice(0));
      const x = audio.getChannelData(0);
      drawWave($("wave"), x);
      drawSpectrogram($("spec"), x, audio.sampleRate);
      ctx.close();
    } catch (e) {
      clearCanvas($("wave")); clearCanvas($("spec"));
      showError("The browser cannot draw this file; the server will still try to decode it.");
    }
  }
  state.mediaSent = false;
  $("media-name").textContent = `Selected: ${name} (${state.media.kind}, ${Math.round(buf.byteLength / 1024)} KiB)`;
}

$("file").addEventListener("change", (ev) => {
  const f = ev.target.files[0];
  if (f) useFile(f, f.name);
});

$("record").addEventListener("click", async () => {
  const btn = $("record");
  if (state.recorder) { state.recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const type = MediaRecorder.isTypeSupported("audio/webm;codecs=opus") ? "audio/webm;codecs=opus" : "";
    const rec = new MediaRecorder(stream, type ? { mimeType: type } : {});
    const chunks = [];
    rec.ondataavailable = (e) => chunks.push(e.data);
    rec.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      state.recorder = null;
      btn.textContent = "Record from microphone"; btn.setAttribute("aria-pressed", "false");
      $("rec-status").textContent = "";
      const blob = new Blob(chunks, { type: rec.mimeType || "audio/webm" });
      useFile(blob, "recording.webm");
    };
    rec.start();
    state.recorder = rec;
    btn.textContent = "Stop recording"; btn.setAttribute("aria-pressed", "true");
    $("rec-status").textContent = "Recording…";
  } catch (e) {
    showError("Microphone not available: " + e.message);
  }
});

// ---- drawing ---------------------------------------------------------------------------------

function clearCanvas(c) { c.getContext("2d").clearRect(0, 0, c.width, c.height); }

function drawWave(c, x) {
  const g = c.getContext("2d"), w = c.width, h = c.height, step = Math.max(1, Math.floor(x.length / w));
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#0b5cad";
  g.beginPath();
  for (let i = 0; i < w; i++) {  // min/max per pixel column
    let lo = 1, hi = -1;
    for (let j = i * step; j < Math.min(x.length, (i + 1) * step); j++) { lo = Math.min(lo, x[j]); hi = Math.max(hi, x[j]); }
    if (lo > hi) break;
    g.moveTo(i + 0.5, (1 - hi) * h / 2);
    g.lineTo(i + 0.5, (1 - lo) * h / 2);
  }
  g.stroke();
}

// In-place iterative radix-2 FFT on (re, im), length a power of two.
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = -2 * Math.PI / len, wr = Math.cos(ang), wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1, ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const a = i + k, b = a + len / 2;
        const tr = re[b] * cr - im[b] * ci, ti = re[b] * ci + im[b] * cr;
        re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
        [cr, ci] = [cr * wr - ci * wi, cr * wi + ci * wr];
      }
    }
  }
}

function drawSpectrogram(c, x, sr) {
  // 512-point Hann windows, one column per canvas pixel; rows: 0 .. min(sr/2, 2 kHz), the band
  // where heart and lung sounds live; dB scaled to the loudest cell, 80 dB range.
  const g = c.getContext("2d"), w = c.width, h = c.height, n = 512;
  const maxBin = Math.min(n / 2, Math.ceil(2000 / (sr / n)));
  const hop = Math.max(1, Math.floor((x.length - n) / w));
  const cols = [];
  let top = -Infinity;
  for (let col = 0; col < w && col * hop + n <= x.length; col++) {
    const re = new Float32Array(n), im = new Float32Array(n);
    for (let k = 0; k < n; k++) re[k] = x[col * hop + k] * (0.5 - 0.5 * Math.cos(2 * Math.PI * k / (n - 1)));
    fft(re, im);
    const db = new Float32Array(maxBin);
    for (let k = 0; k < maxBin; k++) { db[k] = 10 * Math.log10(re[k] * re[k] + im[k] * im[k] + 1e-12); top = Math.max(top, db[k]); }
    cols.push(db);
  }
  const img = g.createImageData(w, h);
  cols.forEach((db, col) => {
    for (let y = 0; y < h; y++) {
      const k = Math.floor((h - 1 - y) / h * maxBin);
      const v = Math.max(0, Math.min(1, (db[k] - top + 80) / 80));
      const o = (y * w + col) * 4;
      img.data[o] = 255 * Math.min(1, 2 * v); img.data[o + 1] = 255 * Math.max(0, 2 * v - 1); img.data[o + 2] = 90 * (1 - v); img.data[o + 3] = 255;
    }
  });
  g.putImageData(img, 0, 0);
}

// ---- conversation ----------------------------------------------------------------------------

$("preset").addEventListener("change", () => { if ($("preset").value) $("question").value = $("preset").value; });

function addTurn(role, text) {
  const li = document.createElement("li");
  li.className = role;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Model";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(who, body);
  $("conversation").append(li);
  return body;
}

$("reset").addEventListener("click", () => {
  state.messages = []; state.mediaSent = false;
  $("conversation").replaceChildren(); showError("");
});

async function ask() {
  const q = $("question").value.trim();
  if (!q) { showError("Type a question or pick a preset."); return; }
  showError("");
  const site = $("site").value;
  const text = site && !state.mediaSent ? `Recorded at the ${site}. ${q}` : q;
  const content = [];
  if (state.media && !state.mediaSent) {
    content.push(state.media.kind === "audio"
      ? { type: "input_audio", input_audio: { data: state.media.base64, format: state.media.format } }
      : { type: "image_url", image_url: { url: `data:${state.media.format};base64,${state.media.base64}` } });
  }
  content.push({ type: "text", text });
  const msg = { role: "user", content };
  addTurn("user", (content.length > 1 ? `[${state.media.name}] ` : "") + text);
  const out = addTurn("assistant", "…");
  $("send").disabled = true;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(),
      body: JSON.stringify({ model: "clinlm", messages: [...state.messages, msg], stream: true, max_tokens: state.maxTokens }),
    });
    if (!r.ok) {
      const err = await r.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || `HTTP ${r.status}`);
    }
    let answer = "", buffer = "";
    const reader = r.body.getReader(), dec = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {  // one server-sent event
        const line = buffer.slice(0, cut).trim(); buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const delta = JSON.parse(data).choices[0].delta;
        if (delta.content) { answer += delta.content; out.textContent = answer; }
      }
    }
    out.textContent = answer || "(empty answer)";
    state.messages.push(msg, { role: "assistant", content: answer });
    state.mediaSent = state.mediaSent || content.length > 1;
    $("question").value = "";
  } catch (e) {
    out.parentElement.remove();
    showError(e.message);
  } finally {
    $("send").disabled = false;
  }
}

$("send").addEventListener("click", ask);
$("question").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) ask(); });
