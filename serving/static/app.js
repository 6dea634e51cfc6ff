// The ODH search page: query by a dropped/picked image or by an indexed image, show the top-k.
// Plain JS against the query API next to this page (relative URLs: works under any route prefix).
"use strict";

const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
const api = (path) => base + path;
const $ = (id) => document.getElementById(id);

let classNames = null;
let imagesAvailable = false;
let queryId = null;
let lastQuery = null;

function setState(state) {
  document.body.dataset.state = state;
}

function labelText(label) {
  if (!label || label.length === 0) return "no label";
  return label.map((c) => (classNames && classNames[c] !== undefined ? classNames[c] : "class " + c)).join(", ");
}

function thumb(id, alt) {
  if (!imagesAvailable) {
    const div = document.createElement("div");
    div.className = "noimg";
    div.textContent = "id " + id;
    return div;
  }
  const img = document.createElement("img");
  img.src = api("v1/images/" + id);
  img.alt = alt;
  img.loading = "lazy";
  img.decoding = "async";
  return img;
}

async function errorDetail(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body);
  } catch (e) {
    return response.statusText;
  }
}

async function loadFacts() {
  try {
    const response = await fetch(api("v1/stats"));
    if (!response.ok) throw new Error(await errorDetail(response));
    const s = await response.json();
    classNames = s.class_names || null;
    imagesAvailable = Boolean(s.images);
    const parts = [
      s.ntotal.toLocaleString() + " images",
      s.n_bits + "-bit codes",
      s.shards + " shard" + (s.shards === 1 ? "" : "s"),
      s.groups.length + " searcher group" + (s.groups.length === 1 ? "" : "s"),
      "nlist " + s.nlist,
      "generation " + s.generation,
    ];
    if (!s.encoder) parts.push("no query encoder: search by indexed images only");
    if (!imagesAvailable) parts.push("no image set known: thumbnails off");
    $("facts").textContent = parts.join(" · ");
  } catch (e) {
    $("facts").textContent = "index facts unavailable: " + e.message;
  }
}

async function loadExamples() {
  const box = $("examples");
  try {
    const response = await fetch(api("v1/sample?n=8"));
    if (!response.ok) throw new Error(await errorDetail(response));
    const { ids } = await response.json();
    box.replaceChildren(
      ...ids.map((id) => {
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.id = String(id);
        button.title = "search by id " + id;
        button.append(thumb(id, "indexed image " + id));
        button.addEventListener("click", () => {
          for (const b of box.querySelectorAll("button")) b.classList.toggle("active", b === button);
          $("query-preview").hidden = true;
          search({ ids: [id] }, id);
        });
        return button;
      })
    );
  } catch (e) {
    box.textContent = "no examples: " + e.message;
  }
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function searchFile(file) {
  if (!file) return;
  const preview = $("query-preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  for (const b of $("examples").querySelectorAll("button")) b.classList.remove("active");
  search({ images: [await readBase64(file)] }, null);
}

function serverTotal(response) {
  const header = response.headers.get("Server-Timing") || "";
  const match = header.match(/total;dur=([\d.]+)/);
  return match ? Number(match[1]) : null;
}

async function search(query, selfId) {
  lastQuery = [query, selfId];
  queryId = selfId;
  const body = { ...query, k: Number($("k").value) || 10 };
  const nprobe = Number($("nprobe").value);
  if (nprobe > 0) body.nprobe = nprobe;
  $("error").hidden = true;
  $("partial").hidden = true;
  $("status").textContent = "searching…";
  setState("searching");
  const t0 = performance.now();
  let response;
  try {
    response = await fetch(api("v1/search"), {
      method: "POST",
      headers: { "content-type": "application/json", "X-ODH-Trace": "1" },
      body: JSON.stringify(body),
    });
  } catch (e) {
    return showError("the server did not answer: " + e.message);
  }
  if (!response.ok) return showError("HTTP " + response.status + ": " + (await errorDetail(response)));
  const answer = await response.json();
  const ms = performance.now() - t0;
  const server = serverTotal(response);
  const hops = response.headers.get("X-ODH-Hops");
  const hits = answer.results[0] || [];
  $("status").innerHTML = "";
  const what = document.createElement("b");
  what.textContent = hits.length + " nearest image" + (hits.length === 1 ? "" : "s");
  $("status").append(
    what,
    " in " + ms.toFixed(1) + " ms" +
      (server !== null ? " (server " + server.toFixed(1) + " ms" + (hops !== null ? ", " + hops + " Serve hops" : "") + ")" : "") +
      " · " + answer.n_bits + "-bit Hamming distance"
  );
  $("status").dataset.latencyMs = ms.toFixed(2);
  if (answer.partial) {
    $("partial").textContent =
      "Partial answer: searcher group(s) " + answer.missing_groups.join(", ") +
      " did not answer in time, so these are the best hits of the other groups only.";
    $("partial").hidden = false;
  }
  render(hits);
  setState("done");
}

function render(hits) {
  $("grid").replaceChildren(
    ...hits.map((hit, rank) => {
      const li = document.createElement("li");
      li.className = "hit" + (hit.id === queryId ? " self" : "");
      li.dataset.id = String(hit.id);
      li.dataset.distance = String(hit.distance);
      li.dataset.rank = String(rank);
      const dist = document.createElement("span");
      dist.className = "dist";
      dist.textContent = "d " + hit.distance;
      dist.title = "Hamming distance";
      const label = document.createElement("div");
      label.className = "label";
      label.textContent = labelText(hit.label);
      const key = document.createElement("div");
      key.className = "key";
      key.textContent = hit.key || "no key";
      key.title = key.textContent;
      const id = document.createElement("div");
      id.className = "key";
      id.textContent = "id " + hit.id;
      li.append(thumb(hit.id, "result " + (rank + 1) + ", id " + hit.id), dist, label, key, id);
      return li;
    })
  );
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("status").textContent = "";
  setState("error");
}

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => searchFile(e.target.files[0]));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    searchFile(e.dataTransfer.files[0]);
  });
  $("shuffle").addEventListener("click", loadExamples);
  for (const id of ["k", "nprobe"]) {
    $(id).addEventListener("change", () => lastQuery && search(...lastQuery));
  }
}

wire();
setState("loading");
loadFacts()
  .then(loadExamples)
  .then(() => setState("ready"));
