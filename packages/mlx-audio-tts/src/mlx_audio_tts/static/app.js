// The page: talks to the REST API (/info, /v1/audio/voices, /tts, /audio, /play, /stop,
// /open_output_folder), plays the result in an <audio> element and feeds the orb.
import { Orb } from "./orb.js";

const MAX_LOCAL_FILE_BYTES = 200 * 1024 * 1024; // files played in the page never leave it

const $ = (id) => document.getElementById(id);
const player = $("player");
const status = $("status");
let lastFile = null;
let audioGraph = null;
let orb = null;
let localUrl = null;

function say(message, isError = false) {
  status.textContent = message;
  status.classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = body.error?.message || body.error || `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

function option(select, value, label = value) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label;
  select.append(o);
}

async function loadVoices() {
  const select = $("voice");
  const model = $("model").value;
  const info = await api(`/v1/audio/voices?model=${encodeURIComponent(model)}`);
  select.replaceChildren();
  for (const v of info.voices) option(select, v);
  select.value = info.default;
  select.dataset.loaded = String(info.voices.length);
}

/** The analyser between the <audio> element and the speakers (made once: an element can
 * feed only one MediaElementSource). */
function connectAudio() {
  if (audioGraph) {
    if (audioGraph.context.state === "suspended") audioGraph.context.resume();
    return;
  }
  const context = new AudioContext();
  const source = context.createMediaElementSource(player);
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  analyser.smoothingTimeConstant = 0.6;
  source.connect(analyser);
  analyser.connect(context.destination);
  audioGraph = { context, analyser };
  orb?.setAnalyser(analyser);
}

async function playNow() {
  connectAudio();
  try {
    await player.play();
  } catch (e) {
    say(`press play to listen (${e.message})`);
  }
}

async function generate(event) {
  event.preventDefault();
  const button = $("generate");
  const text = $("text").value;
  if (!text.trim()) return say("type some text first", true);
  button.disabled = true;
  say("generating…");
  const started = performance.now();
  try {
    const form = new URLSearchParams({
      text, voice: $("voice").value, speed: $("speed").value, model: $("model").value,
    });
    const result = await api("/tts", { method: "POST", body: form });
    lastFile = result.filename;
    $("play-server").disabled = false;
    player.src = `/audio/${encodeURIComponent(result.filename)}`;
    const took = ((performance.now() - started) / 1000).toFixed(1);
    say(`${result.duration_s.toFixed(1)} s of audio in ${took} s → ${result.filename}`);
    if ($("autoplay").checked) await playNow();
  } catch (e) {
    say(`generation failed: ${e.message}`, true);
  } finally {
    button.disabled = false;
  }
}

function playLocalFile() {
  const file = $("upload").files[0];
  if (!file) return;
  if (file.size > MAX_LOCAL_FILE_BYTES) {
    say(`${file.name} is over ${MAX_LOCAL_FILE_BYTES / 1024 / 1024} MB`, true);
    return;
  }
  if (localUrl) URL.revokeObjectURL(localUrl);
  localUrl = URL.createObjectURL(file);
  player.src = localUrl;
  say(`playing ${file.name} (in this page only)`);
  playNow();
}

async function post(path, fields) {
  const body = fields ? new URLSearchParams(fields) : undefined;
  return api(path, { method: "POST", body });
}

async function init() {
  try {
    orb = new Orb($("orb"));
    orb.start();
  } catch (e) {
    $("orb").hidden = true;
    $("orb-fallback").hidden = false;
    console.warn(e);
  }
  $("speed").addEventListener("input", () => {
    $("speed-value").textContent = `${Number($("speed").value).toFixed(2)}×`;
  });
  $("tts-form").addEventListener("submit", generate);
  $("upload").addEventListener("change", playLocalFile);
  $("model").addEventListener("change", () => loadVoices().catch((e) => say(e.message, true)));
  player.addEventListener("play", () => { document.body.dataset.audio = "playing"; connectAudio(); });
  player.addEventListener("ended", () => { document.body.dataset.audio = "ended"; });
  $("play-server").addEventListener("click", () =>
    post("/play", { filename: lastFile }).then(() => say(`playing ${lastFile} on the server`),
                                                (e) => say(e.message, true)));
  $("stop-server").addEventListener("click", () =>
    post("/stop").then(() => say("stopped"), (e) => say(e.message, true)));
  $("open-folder").addEventListener("click", () =>
    post("/open_output_folder").then((r) => say(`opened ${r.path}`), (e) => say(e.message, true)));
  try {
    const info = await api("/info");
    for (const m of info.models) option($("model"), m);
    $("model").value = info.default_model;
    $("text").maxLength = info.max_text_chars;
    $("open-folder").hidden = !info.can_open_folder;
    await loadVoices();
    say("ready");
  } catch (e) {
    say(`the server did not answer: ${e.message}`, true);
  }
}

init();
