"use strict";
// The page talks to the same API as any client: the photo is parsed once (POST /v1/persons,
// progressive: a preview at once, the exact parse behind it), the gallery garments the server
// dresses ahead fill a grid as they come (GET /v1/persons/{id}/dressed), and each garment is one
// POST /v1/tryon with the person_id: from the store when it was dressed ahead, else GMM and TOM.
// Where the server has API keys, the first refusal asks for one, kept for the tab (sessionStorage).

const $ = (id) => document.getElementById(id);
const KEY = "tryon-api-key";
const PARSE_FLAGS = ["need_pre", "need_bright", "check_dirty"];
const DRESS_FLAGS = ["keep_back", "need_dilate"];
let personId = null;
let uploadedAt = 0;  // performance.now() of the upload: the grid's first-look figures count from it
let asking = null;  // the open key dialog: calls refused meanwhile wait for the one answer

const flag = (name) => String(document.querySelector(`input[name="${name}"]`).checked);
const status = (text) => { $("status").textContent = text; };

async function api(url, options = {}) {
  // fetch, with the tab's API key if it has one; a refusal asks for the key and sends again.
  for (;;) {
    const key = sessionStorage.getItem(KEY);
    const response = await fetch(url, key ? { ...options, headers: { Authorization: `Bearer ${key}` } } : options);
    if (response.status !== 401) return response;
    if (sessionStorage.getItem(KEY) === key) await askKey(key !== null);  // else a newer key came meanwhile
  }
}

function askKey(refused) {
  const dialog = $("key-dialog");
  asking ??= new Promise((resolve, reject) => {
    $("key-refused").hidden = !refused;
    $("key").value = "";
    dialog.returnValue = "";
    dialog.addEventListener("close", () => {
      asking = null;
      if (dialog.returnValue !== "ok") return reject(new Error("this server needs an API key"));
      sessionStorage.setItem(KEY, $("key").value);
      resolve();
    }, { once: true });
    dialog.showModal();
  });
  return asking;
}

async function showImage(image, url) {
  // An <img> cannot send the key: its PNG comes through fetch, shown as a blob URL.
  image.dataset.url = url;
  const response = await api(url).catch(() => null);  // no key given: the call that asked says so
  if (!response?.ok) return false;  // deleted or expired meanwhile: the image stays as it was
  const blob = await response.blob();
  if (image.dataset.url !== url) return false;  // a newer image was asked for meanwhile
  if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
  image.src = URL.createObjectURL(blob);
  return true;
}

async function getJson(url) {
  const response = await api(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function send(url, options) {
  const response = await api(url, options);
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
  if (health.synthetic) {  // the untrained pose frames no one: the crop would refuse every photo
    document.querySelector('input[name="need_pre"]').checked = false;
    $("crop-note").hidden = false;
  }
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
    Object.assign(image, { alt: garment.id, width: 96, height: 128 });
    showImage(image, garment.url);
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
  form.append("progressive", "true");
  forgetPerson();
  $("person-step").classList.add("busy");
  status("Parsing your photo (a quick preview first)...");
  uploadedAt = performance.now();
  try {
    const person = await send("/v1/persons", { method: "POST", body: form });
    personId = person.person_id;
    showImage($("labels"), person.labels_url);
    const expires = new Date(person.expires_at).toLocaleString();
    $("person-info").textContent = `Parsed${person.cached ? " (found: parsed before)" : ""}: confidence ` +
      `${person.confidence.toFixed(3)}${person.reason ? ` - ${person.reason}` : ""}. Kept until ${expires}.`;
    $("parsed").hidden = false;
    $("garment-step").disabled = false;
    status(person.parse_quality === "preview" ? "Ready (preview; the exact parse follows): click a garment."
      : "Ready: click a garment.");
    followDressed(person.person_id);
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
  for (const image of $("dressed").querySelectorAll("img")) URL.revokeObjectURL(image.src);
  $("dressed").replaceChildren();
  $("dressed").hidden = $("dressed-note").hidden = true;
  delete $("dressed").dataset.firstLookMs;
  delete $("dressed").dataset.exactMs;
}

async function followDressed(id) {
  // Polls until the server's background work for this person is done, or another photo is chosen.
  while (personId === id) {
    let body;
    try {
      body = await getJson(`/v1/persons/${id}/dressed`);
    } catch (error) {
      return;  // deleted or expired meanwhile: a click parses again
    }
    if (personId !== id) return;
    showDressed(body);
    if (!body.pending) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function showDressed(body) {
  const grid = $("dressed");
  grid.hidden = $("dressed-note").hidden = body.garments.length === 0;
  for (const garment of body.garments) {
    let tile = grid.querySelector(`[data-garment="${CSS.escape(garment.id)}"]`);
    if (!tile) {
      tile = document.createElement("button");
      Object.assign(tile, { type: "button", className: "tile", title: garment.id });
      tile.dataset.garment = garment.id;
      const image = document.createElement("img");
      image.alt = `you in ${garment.id}`;
      image.addEventListener("load", () => firstLook(tile.dataset.quality));
      const mark = document.createElement("span");
      tile.append(image, mark);
      tile.addEventListener("click", () => pickDressed(garment.id, image));
      grid.append(tile);
    }
    const quality = garment.parse_quality;
    if (garment.url && tile.dataset.wanted !== quality) {
      tile.dataset.wanted = quality;
      showImage(tile.querySelector("img"), garment.url).then((shown) => {
        if (!shown) return void delete tile.dataset.wanted;  // asked again at the next poll
        tile.dataset.quality = quality;  // marked once its own image is the one shown
        const mark = tile.querySelector("span");
        mark.textContent = quality === "full" ? "exact" : "preview";
        mark.className = `mark ${quality}`;
      });
    }
  }
}

function firstLook(quality) {
  // The page's own figures: upload to the first try-on shown, and to the first exact one.
  const ms = (performance.now() - uploadedAt).toFixed(0);
  const grid = $("dressed");
  if (!grid.dataset.firstLookMs) grid.dataset.firstLookMs = ms;
  if (quality === "full" && !grid.dataset.exactMs) grid.dataset.exactMs = ms;
}

function pickDressed(garmentId, image) {
  $("result-image").src = image.src;  // at once; the try-on below brings its figures (from the store)
  $("result").hidden = false;
  const radio = document.querySelector(`input[name="garment"][value="${CSS.escape(garmentId)}"]`);
  if (!radio) return;
  radio.checked = true;
  $("cloth").value = "";
  dress();
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
