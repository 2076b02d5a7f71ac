// The charrnn web page: pick a model, generate (streamed over server-sent events) or predict.
// Plain JavaScript, no libraries: the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];
let running = null; // the AbortController of the generation in progress

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function errorText(res) {
  try {
    const body = await res.json();
    return body.error ? body.error.message : res.statusText;
  } catch (e) {
    return `${res.status} ${res.statusText}`;
  }
}

function current() {
  return models.find((m) => m.id === $("model").value);
}

function showModel() {
  const m = current();
  if (!m) return;
  const generates = m.endpoint === "/v1/completions";
  $("generate-panel").hidden = !generates;
  $("predict-panel").hidden = generates;
  $("task").textContent = m.title || m.task;
  $("label-box").hidden = !m.conditioned;
  if (m.conditioned) {
    $("label").replaceChildren(...m.labels.map((l) => new Option(l, l)));
  }
  status("");
}

async function loadModels() {
  const res = await fetch("/v1/models");
  if (!res.ok) return status(await errorText(res), true);
  models = (await res.json()).data;
  $("model").replaceChildren(...models.map((m) => new Option(m.id, m.id)));
  showModel();
}

// Reads "data: {...}\n\n" events from a fetch body as they arrive.
async function* serverEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

async function generate() {
  const m = current();
  const prime = $("prime").value;
  const request = {model: m.id, prompt: prime, max_tokens: Number($("length").value),
                   temperature: Number($("temperature").value), stream: true,
                   stream_options: {include_usage: true}};
  if ($("seed").value !== "") request.seed = Number($("seed").value);
  if (m.conditioned) request.label = $("label").value;
  $("output-prime").textContent = prime;
  $("output-text").textContent = "";
  running = new AbortController();
  $("generate").disabled = true;
  $("stop").disabled = false;
  status("generating…");
  const t0 = performance.now();
  let reason = "", tokens = 0;
  try {
    const res = await fetch("/v1/completions", {method: "POST", headers: {"Content-Type": "application/json"},
                                               body: JSON.stringify(request), signal: running.signal});
    if (!res.ok) return status(await errorText(res), true);
    for await (const data of serverEvents(res.body)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) return status(chunk.error.message, true);
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      for (const choice of chunk.choices) {
        const box = $("output");
        const following = box.scrollTop + box.clientHeight >= box.scrollHeight - 4; // reader at the bottom
        $("output-text").textContent += choice.text;
        if (following) box.scrollTop = box.scrollHeight;
        if (choice.finish_reason) reason = choice.charrnn_finish_reason || choice.finish_reason;
      }
    }
    const secs = (performance.now() - t0) / 1000;
    status(`${tokens} tokens in ${secs.toFixed(2)} s (${(tokens / secs).toFixed(0)} tokens/s); finished: ${reason}`);
  } catch (e) {
    status(e.name === "AbortError" ? "stopped" : String(e), e.name !== "AbortError");
  } finally {
    running = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
}

async function predict() {
  const m = current();
  const input = $("predict-input").value.split("\n").filter((l) => l.trim() !== "");
  if (!input.length) return status("type one input per line", true);
  const request = {model: m.id, input};
  if (m.predict_options.includes("top_k")) request.top_k = Math.min(3, m.labels.length);
  status("predicting…");
  const res = await fetch("/v1/predict", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify(request)});
  if (!res.ok) return status(await errorText(res), true);
  const data = (await res.json()).data;
  // The columns follow what the predictions hold: a classifier's labels, a tagger's tags
  // per token, an output with its score, or (another package's task) its fields as they are.
  const first = data[0] || {};
  const shape = "top" in first ? "labels" : "tags" in first ? "tags" : "score" in first ? "outputs" : "fields";
  const fields = Object.keys(first).filter((k) => k !== "index" && k !== "input");
  const head = {labels: ["input", "label", "probability", "next best"], tags: ["token", "tag", "probability"],
                outputs: ["input", "output", "score"], fields: ["input", ...fields]}[shape];
  const thead = $("predictions").tHead;
  thead.replaceChildren();
  const hr = thead.insertRow();
  for (const h of head) hr.appendChild(Object.assign(document.createElement("th"), {textContent: h}));
  const body = $("predictions").tBodies[0];
  body.replaceChildren();
  for (const d of data) {
    if (shape === "tags") {
      d.tokens.forEach((t, i) => {
        const r = body.insertRow();
        cell(r, t); cell(r, d.tags[i]); cell(r, d.probabilities[i].toFixed(3), "num");
      });
      continue;
    }
    const r = body.insertRow();
    cell(r, d.input);
    if (shape === "labels") {
      cell(r, d.label); cell(r, d.probability.toFixed(3), "num");
      cell(r, d.top.slice(1).map((t) => `${t.label} ${t.probability.toFixed(3)}`).join(", "));
    } else if (shape === "outputs") {
      cell(r, d.output); cell(r, d.score.toFixed(3), "num");
    } else {
      for (const f of fields) cell(r, typeof d[f] === "number" ? d[f].toFixed(4) : JSON.stringify(d[f]));
    }
  }
  status(`${data.length} prediction(s)`);
}

$("model").addEventListener("change", showModel);
$("temperature").addEventListener("input", () => {
  $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
});
$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => running && running.abort());
$("predict").addEventListener("click", predict);
loadModels();
