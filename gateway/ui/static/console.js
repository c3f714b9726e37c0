// stageserve console: filter the models table as you type, click the timeline to ask what
// served at that time, refresh the live tables. No framework, no build step.
"use strict";

function filterModels(input) {
  const words = input.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  const rows = document.querySelectorAll("tr.model");
  rows.forEach((row) => {
    const hay = row.dataset.search || "";
    const hit = words.every((w) => hay.includes(w));
    row.classList.toggle("hidden", !hit);
    if (hit) shown += 1;
  });
  const count = document.getElementById("shown");
  if (count) count.textContent = shown + " of " + rows.length + " models";
}

function timeAtClick(timeline, event) {
  const rows = timeline.querySelector(".tl-rows");
  if (!rows) return null;
  const box = rows.getBoundingClientRect();
  const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  const start = Date.parse(timeline.dataset.start);
  const end = Date.parse(timeline.dataset.end);
  return new Date(start + fraction * (end - start));
}

function refreshLive(box) {
  fetch(box.dataset.refresh, { headers: { accept: "text/html" } })
    .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
    .then((html) => { box.innerHTML = html; })
    .catch(() => {});
}

document.addEventListener("DOMContentLoaded", () => {
  const search = document.getElementById("search");
  if (search) {
    search.addEventListener("input", () => filterModels(search));
    filterModels(search);
  }
  const timeline = document.getElementById("timeline");
  if (timeline) {
    timeline.addEventListener("click", (event) => {
      const at = timeAtClick(timeline, event);
      if (at === null) return;
      const iso = at.toISOString();
      const url = new URL(window.location.href);
      url.searchParams.set("at", iso);
      url.hash = "answers";
      window.location.assign(url.toString());
    });
  }
  const live = document.getElementById("live");
  if (live) setInterval(() => refreshLive(live), 3000);
});
