"use strict";
// The page talks to the same API as any client: the photo is parsed once (POST /v1/persons),
// then each garment is one POST /v1/tryon with the person_id: GMM and TOM only.

const $ = (id) => document.getElementById(id);
const PARSE_FLAGS = ["need_pre", "need_bright", "check_dirty"];
const DRESS_FLAGS = ["keep_back", "need_dilate"];
let personId = null;

const flag = (name) => String(document.querySelector(`input[name="${name}"]`).checked);
const status = (text) => { $("status").textContent = text; };

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function send(url, options) {
  const response = await fetch(url, options);
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    const retry = response.headers.get("Retry-After");
    const error = new Error(body.detail + (retry ? ` (try again in ${retry} s)` : ""));
    error.status = response.status;
    throw error;
  }
  return body;
}

async function showHealth() {
  const health = await getJson("/healthz");
  $("synthetic").hidden = !health.synthetic;
  $("ttl").textContent = `${+(health.store.ttl_s / 3600).toFixed(2)} h`;
}

async function showGallery() {
  const { garments } = await getJson("/v1/garments");
  for (const garment of garments) {
    const label = document.createElement("label");
    label.className = "garment";
    const radio = document.createElement("input");
    Object.assign(radio, { type: "radio", name: "garment", value: garment.id });
    radio.addEventListener("change", () => { $("cloth").value = ""; dress(); });
    const image = document.createElement("img");
    Object.assign(image, { src: garment.url, alt: garment.id, width: 96, height: 128 });
    const name = document.createElement("span");
    name.textContent = garment.id;
    label.append(radio, image, name);
    $("gallery").append(label);
  }
}

async function parsePhoto() {
  const photo = $("person").files[0];
  if (!photo) return;
  const form = new FormData();
  form.append("person", photo);
  for (const name of PARSE_FLAGS) form.append(name, flag(name));
  forgetPerson();
  $("person-step").classList.add("busy");
  status("Parsing your photo (JPP-Net: a few seconds)...");
  try {
    const person = await send("/v1/persons", { method: "POST", body: form });
    personId = person.person_id;
    $("labels").src = person.labels_url;
    const expires = new Date(person.expires_at).toLocaleString();
    $("person-info").textContent = `Parsed${person.cached ? " (found: parsed before)" : ""}: confidence ` +
      `${person.confidence.toFixed(3)}${person.reason ? ` - ${person.reason}` : ""}. Kept until ${expires}.`;
    $("parsed").hidden = false;
    $("garment-step").disabled = false;
    status("Ready: click a garment.");
    if (chosenGarment(new FormData())) await dress();
  } catch (error) {
    status(`Error: ${error.message}`);
  } finally {
    $("person-step").classList.remove("busy");
  }
}

function forgetPerson() {
  personId = null;
  $("parsed").hidden = true;
  $("garment-step").disabled = true;
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

async function dress(event) {
  if (event) event.preventDefault();
  if (!personId) return;
  const form = new FormData();
  form.append("person_id", personId);
  if (!chosenGarment(form)) {
    status("Pick a garment or upload one.");
    return;
  }
  for (const name of DRESS_FLAGS) form.append(name, flag(name));
  form.append("format", "json");
  status("Dressing...");
  const start = performance.now();
  try {
    const body = await send("/v1/tryon", { method: "POST", body: form });
    showResult(body, performance.now() - start);
    status("");
  } catch (error) {
    if (error.status === 404) {  // expired or deleted meanwhile: parse the photo again, then retry
      status("Your parsed photo has expired; parsing it again...");
      await parsePhoto();
      return;
    }
    status(`Error: ${error.message}`);
  }
}

function showResult(body, roundTripMs) {
  $("result-image").src = "data:image/png;base64," + body.image_png_base64;
  const verdict = body.ok ? "ok" : "below 0.1, which the seed's service called a failure";
  $("verdict").textContent = `confidence ${body.confidence.toFixed(3)} (${verdict})` +
    (body.reason ? ` - ${body.reason}` : "") + (body.synthetic ? " - synthetic weights: noise" : "");
  $("roundtrip").textContent = `answered in ${roundTripMs.toFixed(0)} ms`;
  $("roundtrip").dataset.ms = roundTripMs.toFixed(1);
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

async function deletePhoto() {
  if (!personId) return;
  try {
    await send(`/v1/persons/${personId}`, { method: "DELETE" });
    forgetPerson();
    $("result").hidden = true;
    $("person").value = "";
    status("Deleted: the server no longer has your photo.");
  } catch (error) {
    status(`Error: ${error.message}`);
  }
}

$("person").addEventListener("change", parsePhoto);
for (const name of PARSE_FLAGS) document.querySelector(`input[name="${name}"]`).addEventListener("change", parsePhoto);
for (const name of DRESS_FLAGS) document.querySelector(`input[name="${name}"]`).addEventListener("change", () => dress());
$("cloth").addEventListener("change", () => {
  for (const radio of document.querySelectorAll('input[name="garment"]')) radio.checked = false;
  dress();
});
$("delete").addEventListener("click", deletePhoto);
$("tryon-form").addEventListener("submit", dress);
showHealth().catch((error) => status(`Error: ${error.message}`));
showGallery().catch((error) => status(`Error: ${error.message}`));
