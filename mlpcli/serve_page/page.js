// The page of `mlp serve`: draw a digit (digit models), upload an image (image models),
// or fill in a table's columns (table models); each answer comes from POST /predict.
"use strict";

const TOP_K = 3;
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

async function predict(requestBody, contentType) {
  try {
    const response = await fetch(`predict?top_k=${TOP_K}`, {
      method: "POST", body: requestBody, headers: contentType ? { "Content-Type": contentType } : {},
    });
    const answer = await response.json();
    if (!response.ok) {
      showStatus(answer.error || `the server answered ${response.status}`);
      return;
    }
    showStatus("");
    showAnswer(answer.predictions[0]);
  } catch (error) {
    showStatus(`no answer from the server: ${error.message}`);
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
      pad.toBlob((blob) => predict(blob, "image/png"), "image/png");
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
