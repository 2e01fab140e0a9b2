// The page of `mlp serve`: draw a digit (digit models), upload an image (image models),
// or fill in a table's columns (table models); each answer comes from POST /predict.
"use strict";

let topK = 3;  // no more than the model's classes (set from /metadata)
const DEBOUNCE_MS = 150;
const STROKE_PX = 18;

const $ = (id) => document.getElementById(id);
const body = document.body;
body.dataset.answers = "0";

function showStatus(text) {
  $("status").textContent = text || "";
}

function showAnswer(prediction) {
  const top = $("top");
  top.replaceChildren();
  if ("class" in prediction) {
    $("answer").textContent = prediction.class;
    for (const item of prediction.top_k) {
      const li = document.createElement("li");
      li.textContent = `${item.class} — ${(item.probability * 100).toFixed(1)}%`;
      top.appendChild(li);
    }
  } else {
    $("answer").textContent = "value" in prediction ? String(prediction.value) : prediction.values.join(", ");
  }
  body.dataset.answers = String(Number(body.dataset.answers) + 1);
}

let latestRequest = 0;  // answers can come back out of order: only the newest request's is shown

function begin() {
  // a request's number, taken when its input is; data-pending counts requests not answered yet (for tests)
  body.dataset.pending = String(Number(body.dataset.pending || 0) + 1);
  return ++latestRequest;
}

async function predict(requestBody, contentType, request = begin()) {
  try {
    const response = await fetch(`predict?top_k=${topK}`, {
      method: "POST", body: requestBody, headers: contentType ? { "Content-Type": contentType } : {},
    });
    const answer = await response.json();
    if (request !== latestRequest) return;  // a newer drawing is on its way
    if (!response.ok) {
      showStatus(answer.error || `the server answered ${response.status}`);
      return;
    }
    showStatus("");
    showAnswer(answer.predictions[0]);
  } catch (error) {
    if (request === latestRequest) showStatus(`no answer from the server: ${error.message}`);
  } finally {
    body.dataset.pending = String(Number(body.dataset.pending) - 1);
  }
}

// ---------------------------------------------------------------- the drawing pad

function setUpPad() {
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const scale = pad.width / pad.clientWidth || 1;
  let drawing = false, last = null, timer = null, inked = false;

  function clear() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    inked = false;
  }

  function point(event) {
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * scale, (event.clientY - box.top) * scale];
  }

  function send() {
    clearTimeout(timer);
    timer = null;
    if (inked) {
      // numbered now, as the drawing is taken: the PNGs may be ready in another order
      const request = begin();
      pad.toBlob((blob) => predict(blob, "image/png", request), "image/png");
    }
  }

  function line(to) {
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = STROKE_PX * scale;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...(last || to));
    ctx.lineTo(...to);
    ctx.stroke();
    last = to;
    inked = true;
  }

  pad.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    drawing = true;
    last = null;
    line(point(event));
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    event.preventDefault();
    line(point(event));
    if (timer === null) timer = setTimeout(send, DEBOUNCE_MS);
  });
  const stop = (event) => {
    if (!drawing) return;
    drawing = false;
    last = null;
    send();
  };
  pad.addEventListener("pointerup", stop);
  pad.addEventListener("pointercancel", stop);
  $("clear").addEventListener("click", () => {
    clear();
    $("answer").textContent = "";
    $("top").replaceChildren();
    showStatus("");
  });
  clear();
}

// ---------------------------------------------------------------- upload and table form

function setUpUpload() {
  $("upload").addEventListener("change", () => {
    const file = $("upload").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file, file.name);
    predict(form, null);  // the browser sets multipart/form-data with its boundary
  });
}

function setUpTable(columns) {
  const fields = $("fields");
  for (const name of columns) {
    const label = document.createElement("label");
    label.textContent = name;
    const input = document.createElement("input");
    input.name = name;
    label.appendChild(input);
    fields.appendChild(label);
  }
  $("table-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const given = {};
    for (const input of fields.querySelectorAll("input")) {
      given[input.name] = [input.value.trim()];  // text, as a CSV cell is read
    }
    predict(JSON.stringify({ columns: given }), "application/json");
  });
}

async function start() {
  try {
    const response = await fetch("metadata");
    const metadata = await response.json();
    $("model").textContent = `${metadata.model} (${metadata.kind}, ${metadata.task})`;
    if (metadata.class_names) topK = Math.min(3, metadata.class_names.length);
    if (metadata.kind === "digits") {
      $("draw").hidden = false;
      setUpPad();
    }
    if (metadata.kind === "digits" || metadata.kind === "image") {
      $("upload-section").hidden = false;
      setUpUpload();
    } else if (metadata.kind === "table" && metadata.columns) {
      $("table-section").hidden = false;
      setUpTable(metadata.columns);
    } else {
      showStatus("this model takes arrays: POST {\"rows\": [...]} to /predict");
    }
    body.dataset.ready = "1";
  } catch (error) {
    showStatus(`could not read the model's metadata: ${error.message}`);
  }
}

start();
