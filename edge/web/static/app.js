// The device's page: one section per tab. Only the visible tab works: live sockets are open
// while the Live tab shows, the health panel is polled while the Health tab shows.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const utc = (seconds) => new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);
const api = async (path) => {
  const response = await fetch(path, { credentials: "same-origin" });
  if (response.status === 401) { location.href = "/login"; }
  if (!response.ok) { throw new Error(await response.text()); }
  return response.json();
};
// A datetime-local / time field's value, read as UTC, as ISO 8601.
const isoOf = (value) => (value.length === 16 ? value + ":00" : value) + "Z";

const pages = {};
let current = null;

function show() {
  const name = (location.hash || "#live").slice(1);
  if (current && pages[current].leave) { pages[current].leave(); }
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.id !== name;
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.page === name);
  }
  current = pages[name] ? name : "live";
  pages[current].enter();
}

// Live: one WebSocket per camera; each message is the capture time (ms, float64) + a JPEG.
window.liveStats = {};
const sockets = [];
pages.live = {
  async enter() {
    const grid = $("#live-cameras");
    grid.replaceChildren();
    for (const camera of await api("/api/cameras")) {
      const figure = document.createElement("figure");
      figure.innerHTML = `<canvas id="live-${camera}" width="640" height="480"></canvas>
        <figcaption><span>${camera}</span><span class="latency"></span></figcaption>`;
      grid.append(figure);
      watch(camera, $("canvas", figure), $(".latency", figure));
    }
  },
  leave() {
    while (sockets.length) { sockets.pop().close(); }
  },
};

// A camera's live view; a socket that closes while Live shows (a network drop, a restart) is
// opened again, first after a second, then up to 30 s apart while the server cannot be
// reached; a session that ended goes to the login (`api` does, on the 401).
function watch(camera, canvas, caption, retryS = 1) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/live/${camera}`);
  socket.binaryType = "arraybuffer";
  const stats = (window.liveStats[camera] = { frames: 0, latencies: [] });
  let drawing = false;
  let opened = false;
  socket.onopen = () => { opened = true; };
  socket.onmessage = async (message) => {
    if (drawing) { return; } // still drawing the previous one: skip this frame
    drawing = true;
    const captured = new DataView(message.data).getFloat64(0);
    const bitmap = await createImageBitmap(new Blob([message.data.slice(8)], { type: "image/jpeg" }));
    if (canvas.width !== bitmap.width) { canvas.width = bitmap.width; canvas.height = bitmap.height; }
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    bitmap.close();
    const latency = Date.now() - captured;
    stats.frames += 1;
    stats.latencies.push(latency);
    if (stats.latencies.length > 300) { stats.latencies.shift(); }
    caption.textContent = `${latency.toFixed(0)} ms behind`;
    drawing = false;
  };
  socket.onclose = () => {
    caption.textContent = "disconnected";
    const index = sockets.indexOf(socket);
    if (index < 0) { return; } // closed on leaving Live
    sockets.splice(index, 1);
    const wait = opened ? 1 : Math.min(2 * retryS, 30);
    setTimeout(() => {
      if (current !== "live") { return; }
      api("/api/cameras").catch(() => {}); // a session that ended: to the login
      watch(camera, canvas, caption, wait);
    }, wait * 1000);
  };
  sockets.push(socket);
}

// Events: newest first, with snapshots; a click plays the recording from before the event.
pages.events = {
  async enter() {
    const form = $("#event-filter");
    await fillCameras(form.camera, true);
    form.onsubmit = (event) => { event.preventDefault(); listEvents(); };
    await listEvents();
  },
};

async function fillCameras(select, all) {
  if (select.options.length > (all ? 1 : 0)) { return; }
  for (const camera of await api("/api/cameras")) { select.add(new Option(camera, camera)); }
}

async function listEvents() {
  const form = $("#event-filter");
  const query = new URLSearchParams();
  for (const key of ["camera", "class"]) { if (form[key].value) { query.set(key, form[key].value); } }
  for (const key of ["since", "until"]) { if (form[key].value) { query.set(key, isoOf(form[key].value)); } }
  const { events, classes } = await api(`/api/events?${query}`);
  const chosen = form.class.value;
  form.class.replaceChildren(new Option("all", ""), ...classes.map((c) => new Option(c, c)));
  form.class.value = chosen;
  const list = $("#event-list");
  list.replaceChildren();
  for (const event of events) {
    const item = document.createElement("li");
    const image = event.snapshot ? `<img src="${event.snapshot}" alt="" loading="lazy">` : "<img alt=''>";
    item.innerHTML = `${image}<div><b></b><br><span></span></div>`;
    $("b", item).textContent = `${event.camera}: ${event.class} #${event.track_id}`;
    $("span", item).textContent = `${event.utc.replace("T", " ").slice(0, 19)} UTC, ${event.confidence}`;
    item.onclick = () => play(event, item);
    list.append(item);
  }
  if (!events.length) { list.innerHTML = "<li>No events.</li>"; }
}

async function play(event, item) {
  for (const other of document.querySelectorAll(".events li")) { other.classList.remove("playing"); }
  item.classList.add("playing");
  const caption = $("#event-caption");
  try {
    const clip = await api(`/api/clip/${event.camera}?t=${encodeURIComponent(event.utc)}`);
    caption.textContent = `${event.camera}, from ${utc(clip.start + clip.offset)} UTC`;
    load($("#event-video"), clip.url, clip.offset);
  } catch (error) {
    caption.textContent = String(error.message || error);
  }
}

function load(video, url, offset) {
  video.src = url;
  video.onloadedmetadata = () => { video.currentTime = offset; video.play().catch(() => {}); };
}

// Recordings: a day's segments on a 24 h line; a click plays one, a range plays or downloads.
pages.recordings = {
  async enter() {
    const form = $("#recording-filter");
    await fillCameras(form.camera, false);
    form.camera.onchange = () => { form.day.replaceChildren(); timeline(); };
    form.day.onchange = timeline;
    $("#range").onsubmit = (event) => { event.preventDefault(); playRange(); };
    await timeline();
  },
};

async function timeline() {
  const form = $("#recording-filter");
  const camera = form.camera.value;
  const day = form.day.value;
  const found = await api(`/api/recordings/${camera}?day=${day}`);
  if (!form.day.options.length) {
    form.day.replaceChildren(...found.days.map((d) => new Option(d, d)));
    form.day.value = found.day;
  }
  const line = $("#timeline");
  line.replaceChildren();
  const dayStart = Date.parse(`${found.day}T00:00:00Z`) / 1000;
  const playSegment = (segment, offset) => {
    $("#recording-caption").textContent = `${camera}, ${utc(segment.start + offset)} UTC`;
    load($("#recording-video"), `/api/segments/${camera}/${segment.name}?v=${segment.size}`, offset);
  };
  for (const segment of found.segments) {
    const block = document.createElement("div");
    block.style.left = `${((segment.start - dayStart) / 864).toFixed(3)}%`;
    block.style.width = `${((segment.end - segment.start) / 864).toFixed(3)}%`;
    line.append(block);
  }
  // A click on the line plays the segment recorded then (or the nearest one).
  line.onclick = (event) => {
    const moment = dayStart + (event.offsetX / line.clientWidth) * 86400;
    const distance = (s) => Math.max(s.start - moment, moment - s.end, 0);
    const nearest = found.segments.reduce((a, b) => (distance(b) < distance(a) ? b : a), found.segments[0]);
    if (nearest) { playSegment(nearest, Math.max(0, Math.min(moment, nearest.end) - nearest.start)); }
  };
  const list = $("#segment-list");
  list.replaceChildren(...found.segments.slice().reverse().map((segment) => {
    const item = document.createElement("li");
    item.innerHTML = `<span></span> <button type="button">Play</button> <a download>Download</a>`;
    $("span", item).textContent = `${utc(segment.start).slice(11)} to ${utc(segment.end).slice(11)}, ` +
      `${(segment.size / 1e6).toFixed(1)} MB`;
    $("button", item).onclick = () => playSegment(segment, 0);
    $("a", item).href = `/api/segments/${camera}/${segment.name}?v=${segment.size}&download=1`;
    return item;
  }));
  const range = $("#range");
  if (found.segments.length && !range.start.value) {
    // The day's last ten minutes at most: the server exports about half an hour at once.
    const end = found.segments[found.segments.length - 1].end;
    range.start.value = utc(Math.max(found.segments[0].start, end - 600)).slice(11);
    range.end.value = utc(end).slice(11);
  }
  rangeLink();
  range.start.onchange = range.end.onchange = rangeLink;
}

function rangeUrl() {
  const camera = $("#recording-filter").camera.value;
  const day = $("#recording-filter").day.value;
  const range = $("#range");
  const start = isoOf(`${day}T${range.start.value}`);
  const end = isoOf(`${day}T${range.end.value}`);
  return `/api/export/${camera}?start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}`;
}

function rangeLink() { $("#download").href = `${rangeUrl()}&download=1`; }

function playRange() {
  $("#recording-caption").textContent = "exporting...";
  const video = $("#recording-video");
  load(video, rangeUrl(), 0);
  video.oncanplay = () => { $("#recording-caption").textContent = ""; };
  video.onerror = () => { $("#recording-caption").textContent = "no recording in that range"; };
}

// Health: the same numbers as /metrics, refreshed every 2 s while the tab shows.
let healthTimer = null;
pages.health = {
  async enter() { await refreshHealth(); healthTimer = setInterval(refreshHealth, 2000); },
  leave() { clearInterval(healthTimer); },
};

async function refreshHealth() {
  const report = await api("/api/health");
  const mqtt = report.mqtt
    ? `MQTT ${report.mqtt.mqtt_connected ? "connected" : "disconnected"}, ${report.mqtt.mqtt_spooled_messages ?? 0} spooled`
    : "MQTT off";
  const retention = report.retention;
  $("#device").textContent = `Version ${report.version}, up ${(report.uptime_s / 3600).toFixed(2)} h. ${mqtt}. ` +
    `Retention: ${retention.keep_gb} GB, ${retention.keep_days} days, ${retention.min_free_gb} GB kept free.`;
  const rows = report.cameras.map((c) => {
    const row = document.createElement("tr");
    row.dataset.camera = c.camera;
    const cells = [
      c.camera, c.healthy ? "ok" : "unhealthy", c.fps.toFixed(2),
      c.p95_ms == null ? "-" : `${c.p95_ms.toFixed(0)} ms`, c.frames, c.dropped, c.reconnects,
      c.last_frame_utc ? utc(c.last_frame_utc) : "-", `${(c.recording_bytes / 1e6).toFixed(1)} MB`,
      c.disk ? `${(c.disk.free / 1e9).toFixed(1)} of ${(c.disk.total / 1e9).toFixed(1)} GB` : "-",
    ];
    for (const [index, value] of cells.entries()) {
      const cell = row.insertCell();
      cell.textContent = value;
      if (index === 1) { cell.className = c.healthy ? "good" : "bad"; }
      if (index === 2) { cell.className = "fps"; }
    }
    return row;
  });
  $("#camera-health tbody").replaceChildren(...rows);
  $("#models tbody").replaceChildren(...report.models.map((m) => {
    const row = document.createElement("tr");
    for (const value of [m.model, m.backend, m.precision]) { row.insertCell().textContent = value; }
    return row;
  }));
  $("#status").textContent = report.status.join("\n");
}

window.addEventListener("hashchange", show);
show();
