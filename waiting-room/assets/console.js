// The operators' console: events, live charts, changes with a confirmation step, the
// audit log. The admin token lives in this tab's session storage and goes out only as an
// Authorization header (no cookie: another site cannot make the browser act as the
// operator). The live figures come from the admin stats stream, read with fetch (an
// EventSource cannot send the header).
"use strict";

const TOKEN_KEY = "waiting-room-admin-token";
const HISTORY = 300; // frames kept for the charts (5 minutes at one a second)
const $ = (id) => document.getElementById(id);
let stream = null; // AbortController of the open stats stream
let listTimer = null;
let history = [];
let pendingChange = null;

const CHARTS = [
  ["joins_per_second", "Joins per second", (f) => f.joins_per_second],
  ["activations_per_second", "Activations per second", (f) => f.activations_per_second],
  ["waiting", "Waiting", (f) => f.event.waiting],
  ["active", "Active", (f) => f.event.active],
  ["abandoned", "Abandoned (total)", (f) => f.event.abandoned],
  ["dead_lettered", "Dead-lettered (queue)", (f) => f.event.queue_dead_lettered],
  ["drain", "Time to drain the line (s)", (f) => f.event.estimated_drain_seconds],
  ["wait_p95", "Wait p95, join to active (s)", (f) => f.event.wait_p95_seconds],
  ["held", "Reservations held", (f) => f.sale.reservations_held],
  ["confirmed", "Reservations confirmed", (f) => f.sale.reservations_confirmed],
  ["sold", "Seats sold", (f) => f.sale.seats_sold],
];

const REPORT_CHARTS = [
  ["report-joined", "Joins per minute", (m) => m.joined],
  ["report-activated", "Activations per minute", (m) => m.activated],
  ["report-abandoned", "Abandoned per minute", (m) => m.abandoned],
  ["report-queue", "Queue length at the minute's end", (m) => m.queue_length],
];

const FIGURES = [
  ["joined", "Joined", (f) => f.event.joined],
  ["waiting", "Waiting", (f) => f.event.waiting],
  ["active", "Active", (f) => f.event.active],
  ["activated", "Activated", (f) => f.event.activated],
  ["abandoned", "Abandoned", (f) => f.event.abandoned],
  ["serving", "Serving number", (f) => f.event.serving_number],
  ["drain", "Time to drain", (f) => duration(f.event.estimated_drain_seconds)],
  ["wait-p50", "Wait p50 (join to active)", (f) => waitBound(f.event.wait_p50_seconds)],
  ["wait-p95", "Wait p95", (f) => waitBound(f.event.wait_p95_seconds)],
  ["reserved", "Seat holds", (f) => f.event.reserved],
  ["sold", "Seats sold", (f) => f.sale.seats_sold],
];

function token() { return sessionStorage.getItem(TOKEN_KEY); }

// A histogram bucket's upper bound: "at most".
function waitBound(seconds) {
  return seconds === null || seconds === undefined ? "–" : `≤ ${duration(seconds)}`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "unknown";
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function show(message) { $("error").textContent = message || ""; }
function notice(message) { $("notice").textContent = message || ""; }

async function api(method, path, body) {
  const options = { method, headers: { Authorization: `Bearer ${token()}` } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = parseJson(await response.text());
  if (response.status === 401) {
    signOut("Your admin token was refused; sign in again.");
    throw new Error("unauthorized");
  }
  return { status: response.status, data };
}

// A body that is not JSON (a proxy's error page) reads as none.
function parseJson(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch (error) {
    return null;
  }
}

function apiError(result) {
  const error = result.data && result.data.error;
  return error ? `${error.message} (${error.code})` : `HTTP ${result.status}`;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopLive();
  navigate();
  show(message);
}

function stopLive() {
  if (stream) { stream.abort(); stream = null; }
  if (listTimer) { clearInterval(listTimer); listTimer = null; }
  $("confirm").hidden = true;
  pendingChange = null;
}

function only(sectionId) {
  for (const id of ["sign-in", "events-view", "event-view", "form-view", "report-view", "audit-view"]) {
    $(id).hidden = id !== sectionId;
  }
  $("signed-in").hidden = sectionId === "sign-in";
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

// The route's parts: #/events/gig/edit is ["events", "gig", "edit"].
function routeParts() {
  return location.hash.replace(/^#\/?/, "").split("/").map((part) => {
    try {
      return decodeURIComponent(part);
    } catch (error) {
      return part; // a malformed escape: the page for that text, likely "not found"
    }
  });
}

// The routes: #/ (events), #/events/{id}, #/events/{id}/edit, #/events/{id}/report,
// #/new, #/audit.
function route() {
  stopLive();
  show("");
  if (!token()) { only("sign-in"); $("token").focus(); return; }
  const parts = routeParts();
  if (parts[0] === "events" && parts[1] && parts[2] === "edit") return editEvent(parts[1]);
  if (parts[0] === "events" && parts[1] && parts[2] === "report") return reportPage(parts[1]);
  if (parts[0] === "events" && parts[1]) return eventPage(parts[1]);
  if (parts[0] === "new") return editEvent(null);
  if (parts[0] === "audit") return auditPage();
  return eventsPage();
}

async function eventsPage() {
  only("events-view");
  const refresh = async () => {
    const result = await api("GET", "/admin/events");
    if (result.status !== 200) { show(apiError(result)); return; }
    const body = $("events").querySelector("tbody");
    body.replaceChildren();
    for (const event of result.data.events) {
      const row = document.createElement("tr");
      row.dataset.event = event.event_id;
      const link = document.createElement("a");
      link.href = `#/events/${encodeURIComponent(event.event_id)}`;
      link.textContent = `${event.name} (${event.event_id})`;
      cell(row, "").appendChild(link);
      cell(row, event.phase ? `${event.state}, ${event.phase.replace(/_/g, " ")}` : event.state);
      cell(row, event.partition, "number");
      cell(row, event.joined, "number");
      cell(row, event.waiting, "number");
      cell(row, event.active, "number");
      cell(row, event.activated, "number");
      cell(row, duration(event.estimated_drain_seconds), "number");
      body.appendChild(row);
    }
    $("no-events").hidden = result.data.events.length > 0;
  };
  // Set before the first await, so leaving the page at once still stops it.
  listTimer = setInterval(() => refresh().catch(() => {}), 2000);
  await refresh();
}

async function eventPage(eventId) {
  only("event-view");
  history = [];
  $("event-title").textContent = eventId;
  $("edit-event").href = `#/events/${encodeURIComponent(eventId)}/edit`;
  $("report-link").href = `#/events/${encodeURIComponent(eventId)}/report`;
  $("public-page").href = `/events/${encodeURIComponent(eventId)}`;
  buildFigures();
  buildCharts($("charts"), CHARTS);
  // The stream first (it registers itself before any await), so leaving the page at
  // once still stops it.
  follow(eventId);
  await loadEventAudit(eventId);
}

function buildFigures() {
  const figures = $("figures");
  figures.replaceChildren();
  for (const [key, label] of FIGURES) {
    const box = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.id = `figure-${key}`;
    dd.textContent = "–";
    box.append(dt, dd);
    figures.appendChild(box);
  }
}

const SVG = "http://www.w3.org/2000/svg";

function buildCharts(charts, definitions) {
  charts.replaceChildren();
  for (const [key, label] of definitions) {
    const chart = document.createElement("figure");
    chart.className = "chart";
    chart.id = `chart-${key}`;
    const title = document.createElement("h4");
    title.textContent = label;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    svg.appendChild(document.createElementNS(SVG, "polyline"));
    const scale = document.createElement("div");
    scale.className = "scale";
    const now = document.createElement("span");
    now.className = "now";
    const max = document.createElement("span");
    max.className = "max";
    scale.append(now, max);
    chart.append(title, svg, scale);
    charts.appendChild(chart);
  }
}

function drawCharts(definitions, rows) {
  for (const [key, , value] of definitions) {
    const chart = $(`chart-${key}`);
    const values = rows.map((row) => Number(value(row) ?? 0));
    const top = Math.max(1, ...values);
    // The line grows from the left over the first minute, then the window scrolls.
    const width = Math.max(60, values.length);
    chart.querySelector("svg").setAttribute("viewBox", `0 0 ${width} 100`);
    const points = values.map((v, i) => `${i},${(100 - (v / top) * 96 - 2).toFixed(1)}`);
    chart.querySelector("polyline").setAttribute("points", points.join(" "));
    const latest = values.length ? values[values.length - 1] : 0;
    chart.querySelector(".now").textContent = `now ${Number.isInteger(latest) ? latest : latest.toFixed(1)}`;
    chart.querySelector(".max").textContent = `max ${Number.isInteger(top) ? top : top.toFixed(1)}`;
  }
}

function render(frame) {
  const event = frame.event;
  $("event-title").textContent = `${event.name} (${event.event_id})`;
  $("event-meta").textContent = `state ${event.state}` +
    (event.partition === null ? ", partition released" : `, partition ${event.partition}, queue ${event.queue_mode}`) +
    (event.activation ? `, ${event.activation.batch_size} every ${event.activation.interval_ms} ms` +
      (event.activation.max_active ? `, capacity ${event.activation.max_active}` : "") : "") +
    (event.seats ? `, ${event.seats.rows}×${event.seats.seats_per_row} seats` : "");
  const schedule = event.schedule;
  $("event-schedule").textContent = schedule
    ? `Sale ${(event.phase || "").replace(/_/g, " ")}: pre-queue ${schedule.prequeue_opens_at}, start ${schedule.sale_starts_at}` +
      (schedule.sale_ends_at ? `, end ${schedule.sale_ends_at}` : "") + `, order ${schedule.order}` +
      (event.draw ? `, draw commitment ${event.draw.commitment}` + (event.draw.seed ? `, seed ${event.draw.seed}` : "") : "")
    : "";
  for (const [key, , value] of FIGURES) {
    const shown = value(frame);
    $(`figure-${key}`).textContent = shown === null || shown === undefined ? "–" : String(shown);
  }
  history.push(frame);
  if (history.length > HISTORY) history.shift();
  drawCharts(CHARTS, history);
}

// Follows the admin stats stream, reconnecting after a break.
async function follow(eventId) {
  const controller = new AbortController();
  stream = controller;
  while (!controller.signal.aborted) {
    try {
      const response = await fetch(`/admin/events/${encodeURIComponent(eventId)}/stats/events`, {
        headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" },
        signal: controller.signal,
      });
      if (response.status === 401) { signOut("Your admin token was refused; sign in again."); return; }
      if (response.status !== 200) {
        show(apiError({ status: response.status, data: parseJson(await response.text()) }));
        return;
      }
      $("stream-state").textContent = "Live";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const name = (block.match(/^event: (.*)$/m) || [])[1];
          const data = (block.match(/^data: (.*)$/m) || [])[1];
          if (name === "stats" && data) {
            const frame = JSON.parse(data);
            if (frame.unavailable) $("stream-state").textContent = `Figures unavailable: ${frame.unavailable}`;
            else render(frame);
          } else if (name === "gone") {
            $("stream-state").textContent = "This event no longer exists.";
            return;
          }
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    $("stream-state").textContent = "Reconnecting…";
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

const CONSEQUENCES = {
  open: "Fans are let in at the queue's rate again.",
  paused: "Nobody more is let in until you open it again; fans keep their places.",
  passthrough: "Every fan is let in as they arrive: the line stops protecting the site.",
  closed: "No new fan can join; those in line are still served.",
};

function askChange(eventId, state) {
  pendingChange = { eventId, state };
  $("confirm-text").textContent = `Set ${eventId} to ${state}? ${CONSEQUENCES[state]} ` +
    "A paused, open or passthrough state applies to the event's queue (every event on it).";
  $("confirm").hidden = false;
  $("confirm-yes").focus();
}

async function applyChange() {
  if (!pendingChange) return;
  const { eventId, state } = pendingChange;
  $("confirm").hidden = true;
  pendingChange = null;
  const result = await api("PUT", `/admin/events/${encodeURIComponent(eventId)}`, { state });
  if (result.status === 200) {
    notice(`${eventId} is now ${result.data.state}.`);
    await loadEventAudit(eventId);
  } else {
    show(apiError(result));
  }
}

function changes(before, after) {
  const lines = [];
  const walk = (a, b, path) => {
    const keys = new Set([...Object.keys(a || {}), ...Object.keys(b || {})]);
    for (const key of [...keys].sort()) {
      const x = a ? a[key] : undefined;
      const y = b ? b[key] : undefined;
      if (x && y && typeof x === "object" && typeof y === "object" && !Array.isArray(x)) {
        walk(x, y, `${path}${key}.`);
      } else if (JSON.stringify(x) !== JSON.stringify(y)) {
        lines.push(`${path}${key}: ${JSON.stringify(x ?? null)} → ${JSON.stringify(y ?? null)}`);
      }
    }
  };
  if (!before) return "created";
  if (!after) return "deleted";
  walk(before, after, "");
  return lines.join("\n") || "no change";
}

function auditRows(body, entries, withSubject) {
  body.replaceChildren();
  for (const entry of entries) {
    const row = document.createElement("tr");
    row.dataset.action = entry.action;
    cell(row, new Date(entry.at).toLocaleString());
    cell(row, entry.actor);
    cell(row, entry.action.replace(/_/g, " "));
    if (withSubject) cell(row, entry.event_id ?? (entry.partition !== null ? `queue ${entry.partition}` : "topic"));
    cell(row, changes(entry.before, entry.after));
    body.appendChild(row);
  }
}

async function loadEventAudit(eventId) {
  const result = await api("GET", `/admin/audit?event_id=${encodeURIComponent(eventId)}&limit=20`);
  // The operator may have moved on to another page meanwhile.
  if (result.status === 200 && routeParts()[1] === eventId) {
    auditRows($("event-audit").querySelector("tbody"), result.data.entries, false);
  }
}

async function reportPage(eventId) {
  only("report-view");
  $("report-title").textContent = `Post-sale report: ${eventId}`;
  $("report-back").href = `#/events/${encodeURIComponent(eventId)}`;
  $("report-totals").replaceChildren();
  $("report-charts").replaceChildren();
  const result = await api("GET", `/admin/events/${encodeURIComponent(eventId)}/report`);
  if (result.status === 200) showReport(result.data);
  else $("report-state").textContent = result.status === 404 ? "No report yet: compute one." : apiError(result);
}

function showReport(report) {
  $("report-state").textContent = `Computed ${new Date(report.computed_at).toLocaleString()}` +
    (report.complete ? "." : ": provisional, fans still wait or hold sessions; compute again later.");
  const seconds = (value) => (value === null || value === undefined ? "–" : `${value.toFixed(1)} s`);
  const share = (value) => (value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`);
  const t = report.totals;
  const figures = [
    ["joined", "Joined", t.joined], ["activated", "Activated", t.activated],
    ["abandoned", "Abandoned", t.abandoned], ["used", "Bought (used)", t.used],
    ["expired", "Expired", t.expired], ["still-active", "Still active", t.still_active],
    ["still-waiting", "Still waiting", t.still_waiting], ["dead-lettered", "Dead-lettered", t.dead_lettered],
    ["peak", "Peak queue length", report.peak_queue_length],
    ["wait-p50", "Wait p50", seconds(report.wait_seconds.p50)],
    ["wait-p95", "Wait p95", seconds(report.wait_seconds.p95)],
    ["wait-max", "Longest wait", seconds(report.wait_seconds.max)],
    ["seats-sold", "Seats sold", report.conversion.seats_sold],
    ["bought-share", "Let in who bought", share(report.conversion.bought_share)],
  ];
  const totals = $("report-totals");
  totals.replaceChildren();
  for (const [key, label, value] of figures) {
    const box = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.id = `report-${key}`;
    dd.textContent = String(value);
    box.append(dt, dd);
    totals.appendChild(box);
  }
  buildCharts($("report-charts"), REPORT_CHARTS);
  drawCharts(REPORT_CHARTS, report.per_minute);
}

async function computeReport() {
  const eventId = routeParts()[1];
  $("report-state").textContent = "Computing…";
  const result = await api("POST", `/admin/events/${encodeURIComponent(eventId)}/report`);
  if (result.status === 200) showReport(result.data);
  else $("report-state").textContent = apiError(result);
}

async function auditPage() {
  only("audit-view");
  const result = await api("GET", "/admin/audit?limit=100");
  if (result.status !== 200) { show(apiError(result)); return; }
  auditRows($("audit").querySelector("tbody"), result.data.entries, true);
}

async function editEvent(eventId) {
  only("form-view");
  const form = $("event-form");
  form.reset();
  $("form-error").textContent = "";
  $("form-title").textContent = eventId ? `Edit ${eventId}` : "New event";
  $("f-event-id").readOnly = Boolean(eventId);
  $("cancel-form").href = eventId ? `#/events/${encodeURIComponent(eventId)}` : "#/";
  form.dataset.existing = eventId ? "true" : "";
  if (!eventId) return;
  const result = await api("GET", `/admin/events/${encodeURIComponent(eventId)}`);
  if (result.status !== 200) { show(apiError(result)); return; }
  const event = result.data;
  const set = (name, value) => { if (value !== null && value !== undefined) form.elements[name].value = value; };
  set("event_id", event.event_id);
  set("name", event.name);
  if (event.activation) {
    for (const key of ["batch_size", "interval_ms", "max_active", "active_ttl_seconds", "grace_seconds"]) set(key, event.activation[key]);
  }
  if (event.seats) { set("rows", event.seats.rows); set("seats_per_row", event.seats.seats_per_row); }
  if (event.schedule) {
    for (const key of ["prequeue_opens_at", "sale_starts_at", "sale_ends_at", "order"]) set(key, event.schedule[key]);
  }
}

// Only what the operator filled in is sent: the API keeps the rest.
function formBody(form) {
  const value = (name) => form.elements[name].value.trim();
  const number = (name) => (value(name) === "" ? undefined : Number(value(name)));
  const body = {};
  if (value("name")) body.name = value("name");
  if (value("state")) body.state = value("state");
  const activation = {};
  for (const key of ["batch_size", "interval_ms", "max_active", "active_ttl_seconds", "grace_seconds"]) {
    if (number(key) !== undefined) activation[key] = number(key);
  }
  if (Object.keys(activation).length) body.activation = activation;
  if (number("rows") !== undefined || number("seats_per_row") !== undefined) {
    body.seats = { rows: number("rows"), seats_per_row: number("seats_per_row") };
  }
  if (value("prequeue_opens_at") || value("sale_starts_at")) {
    body.schedule = {
      prequeue_opens_at: value("prequeue_opens_at"),
      sale_starts_at: value("sale_starts_at"),
      order: value("order"),
    };
    if (value("sale_ends_at")) body.schedule.sale_ends_at = value("sale_ends_at");
  }
  return body;
}

async function saveEvent(submit) {
  submit.preventDefault();
  const form = $("event-form");
  const eventId = form.elements.event_id.value.trim();
  $("form-error").textContent = "";
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(eventId)) {
    $("form-error").textContent = "The event id is 1-64 letters, digits, '.', '_' or '-'.";
    return;
  }
  const result = await api("PUT", `/admin/events/${encodeURIComponent(eventId)}`, formBody(form));
  if (result.status === 200 || result.status === 201) {
    notice(result.status === 201 ? `${eventId} created.` : `${eventId} saved.`);
    location.hash = `#/events/${encodeURIComponent(eventId)}`;
  } else {
    $("form-error").textContent = apiError(result);
  }
}

async function signIn(submit) {
  submit.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  try {
    const result = await api("GET", "/admin/events");
    if (result.status === 200) { notice("Signed in."); navigate(); }
  } catch (error) {
    // api() signed out and said why.
  }
}

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => signOut("Signed out."));
$("event-form").addEventListener("submit", (submit) => saveEvent(submit).catch((error) => show(String(error))));
for (const button of document.querySelectorAll("#event-view .actions button[data-state]")) {
  button.addEventListener("click", () => {
    askChange(routeParts()[1], button.dataset.state);
  });
}
$("compute-report").addEventListener("click", () => computeReport().catch((error) => show(String(error))));
$("confirm-yes").addEventListener("click", () => applyChange().catch((error) => show(String(error))));
$("confirm-no").addEventListener("click", () => { $("confirm").hidden = true; pendingChange = null; });
function navigate() {
  Promise.resolve(route()).catch((error) => {
    if (error.message !== "unauthorized") show(String(error));
  });
}
window.addEventListener("hashchange", navigate);
navigate();
