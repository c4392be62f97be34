"use strict";
// The page talks to the same API as any client: /healthz, /v1/garments, POST /v1/tryon.

const $ = (id) => document.getElementById(id);
const FLAGS = ["need_pre", "need_bright", "keep_back", "need_dilate", "check_dirty"];

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function showSynthetic() {
  const health = await getJson("/healthz");
  $("synthetic").hidden = !health.synthetic;
}

async function showGallery() {
  const { garments } = await getJson("/v1/garments");
  const gallery = $("gallery");
  garments.forEach((garment, index) => {
    const label = document.createElement("label");
    label.className = "garment";
    const radio = document.createElement("input");
    Object.assign(radio, { type: "radio", name: "garment", value: garment.id, checked: index === 0 });
    radio.addEventListener("change", () => { $("cloth").value = ""; });
    const image = document.createElement("img");
    Object.assign(image, { src: garment.url, alt: garment.id, width: 96, height: 128 });
    const name = document.createElement("span");
    name.textContent = garment.id;
    label.append(radio, image, name);
    gallery.append(label);
  });
}

function chosenGarment(form) {
  const upload = $("cloth").files[0];
  if (upload) {
    form.append("cloth", upload);
    return true;
  }
  const picked = document.querySelector('input[name="garment"]:checked');
  if (picked) form.append("garment", picked.value);
  return Boolean(picked);
}

function showResult(body) {
  $("result-image").src = "data:image/png;base64," + body.image_png_base64;
  const verdict = body.ok ? "ok" : "below 0.1, which the seed's service called a failure";
  $("verdict").textContent = `confidence ${body.confidence.toFixed(3)} (${verdict})` +
    (body.reason ? ` - ${body.reason}` : "") + (body.synthetic ? " - synthetic weights: noise" : "");
  const stages = Object.entries(body.timings_ms);
  stages.sort(([a], [b]) => (a === "total") - (b === "total"));  // stages in pipeline order, total last
  const rows = stages.map(([stage, ms]) => {
    const row = document.createElement("tr");
    for (const text of [stage, ms.toFixed(1)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  });
  $("timings").tBodies[0].replaceChildren(...rows);
  $("result").hidden = false;
}

async function submit(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("person", $("person").files[0]);
  if (!chosenGarment(form)) {
    $("status").textContent = "Pick a garment or upload one.";
    return;
  }
  for (const flag of FLAGS) form.append(flag, String(document.querySelector(`input[name="${flag}"]`).checked));
  form.append("format", "json");
  $("submit").disabled = true;
  $("status").textContent = "Working...";
  try {
    const response = await fetch("/v1/tryon", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) {
      const retry = response.headers.get("Retry-After");
      throw new Error(body.detail + (retry ? ` (try again in ${retry} s)` : ""));
    }
    showResult(body);
    $("status").textContent = "";
  } catch (error) {
    $("status").textContent = `Error: ${error.message}`;
  } finally {
    $("submit").disabled = false;
  }
}

$("cloth").addEventListener("change", () => {
  for (const radio of document.querySelectorAll('input[name="garment"]')) radio.checked = false;
});
$("tryon-form").addEventListener("submit", submit);
showSynthetic().catch((error) => { $("status").textContent = `Error: ${error.message}`; });
showGallery().catch((error) => { $("status").textContent = `Error: ${error.message}`; });
