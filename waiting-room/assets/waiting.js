// The fan's waiting page: join, then follow the ticket live over EventSource
// (GET /v1/tickets/{token}/events), falling back to polling GET /v1/tickets/{token}
// when streaming fails. The ticket is kept in localStorage, so a reload keeps the place.
// An event that admits only fans the ticket site vouches for is joined with the
// enqueue token the site put in the link (/events/{id}?enqueue_token=...). An event that
// asks for a proof of work gets one solved in a Web Worker (assets/pow-worker.js) before
// each join.
"use strict";

const eventId = decodeURIComponent(location.pathname.split("/")[2] || "");
const enqueueToken = new URLSearchParams(location.search).get("enqueue_token");
if (enqueueToken) {
  // Out of the address bar, the history and later Referer headers: the pass is the fan's.
  history.replaceState(null, "", location.pathname);
}
const storageKey = `waiting-room.ticket.${eventId}`;
const POLL_MS = 2000;
const TERMINAL = ["active", "expired", "abandoned", "used"];

const $ = (id) => document.getElementById(id);
const sections = ["join", "needs-link", "waiting", "active", "ended"];
let source = null;
let pollTimer = null;
let countdownTimer = null;
let lastAnnounced = null;
let eventInfo = null;

function show(section) {
  for (const name of sections) $(name).hidden = name !== section;
}

function say(text) {
  $("message").textContent = text || "";
}

function saved() {
  try {
    return JSON.parse(localStorage.getItem(storageKey));
  } catch {
    return null;
  }
}

function save(ticket) {
  localStorage.setItem(storageKey, JSON.stringify(ticket));
}

function forget() {
  localStorage.removeItem(storageKey);
}

function stopFollowing() {
  if (source) source.close();
  source = null;
  clearTimeout(pollTimer);
  pollTimer = null;
}

function formatWait(seconds) {
  if (seconds === null || seconds === undefined) return "Unknown: the sale is paused";
  if (seconds < 60) return "Less than a minute";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `About ${minutes} minute${minutes === 1 ? "" : "s"}`;
  const hours = Math.floor(minutes / 60);
  return `About ${hours} h ${minutes % 60} min`;
}

function render(status) {
  if (TERMINAL.includes(status.state)) return finish(status);
  const ticket = saved() || {};
  // Progress is measured from the largest position this device has seen.
  const start = Math.max(ticket.start_position || 0, status.position);
  if (start !== ticket.start_position) save({ ...ticket, start_position: start });
  show("waiting");
  $("queue-number").textContent = status.queue_number;
  $("position").textContent = status.position.toLocaleString();
  $("wait").textContent = formatWait(status.estimated_wait_seconds);
  const done = start > 0 ? Math.round((100 * (start - status.position)) / start) : 100;
  $("progress").value = done;
  $("progress").textContent = `${done}%`;
  if (status.position !== lastAnnounced) {
    lastAnnounced = status.position;
    $("announcer").textContent =
      status.position === 0
        ? "You are next in line."
        : `${status.position.toLocaleString()} people ahead of you.`;
  }
}

function finish(status) {
  stopFollowing();
  if (status.state === "active") {
    show("active");
    $("reserve").href = status.reservation_url || "#";
    $("announcer").textContent = "It is your turn. Choose your seats now.";
    const until = Date.parse(status.active_until);
    const tick = () => {
      const left = Math.max(0, Math.round((until - Date.now()) / 1000));
      $("countdown").textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
      if (left === 0) {
        clearInterval(countdownTimer);
        finish({ ...status, state: "expired" });
      }
    };
    clearInterval(countdownTimer);
    tick();
    countdownTimer = setInterval(tick, 1000);
    return;
  }
  clearInterval(countdownTimer);
  const messages = {
    expired: "Your time to reserve has run out.",
    abandoned:
      "Your place was given up because this page was closed when your turn came.",
    used: "This ticket has already been used for a reservation.",
  };
  show("ended");
  $("ended-message").textContent = messages[status.state] || "Your ticket is no longer valid.";
  $("announcer").textContent = $("ended-message").textContent;
}

function follow(token) {
  stopFollowing();
  say("");
  if (!("EventSource" in window)) return poll(token);
  let opened = false;
  source = new EventSource(`/v1/tickets/${encodeURIComponent(token)}/events`);
  source.addEventListener("open", () => {
    opened = true;
    $("connection").textContent = "Live updates on.";
  });
  source.addEventListener("position", (event) => render(JSON.parse(event.data)));
  for (const name of TERMINAL) {
    source.addEventListener(name, (event) => finish(JSON.parse(event.data)));
  }
  source.addEventListener("error", () => {
    // Refused (bad token, too many streams) or broken for good: poll instead. A stream
    // that was open reconnects by itself (the server sends a retry hint).
    if (!source) return;
    if (!opened || source.readyState === EventSource.CLOSED) {
      $("connection").textContent = "Updating every few seconds.";
      poll(token);
    }
  });
}

async function poll(token) {
  stopFollowing();
  try {
    const response = await fetch(`/v1/tickets/${encodeURIComponent(token)}`);
    if (response.status === 401) {
      forget();
      say("Your ticket is no longer valid. Please join the line again.");
      return start();
    }
    if (response.ok) {
      const status = await response.json();
      render(status);
      if (TERMINAL.includes(status.state)) return;
      say("");
    } else {
      say("We could not refresh your place just now; retrying…");
    }
  } catch {
    say("You seem to be offline; retrying…");
  }
  pollTimer = setTimeout(() => poll(token), POLL_MS);
}

// Fetches a challenge and solves it off the main thread, showing progress.
async function proofOfWork() {
  const response = await fetch(`/v1/events/${encodeURIComponent(eventId)}/challenge`);
  if (!response.ok) throw new Error("no challenge");
  const { challenge, difficulty } = await response.json();
  $("solving").hidden = false;
  try {
    const solution = await new Promise((resolve, reject) => {
      const worker = new Worker("/assets/pow-worker.js");
      worker.onmessage = (message) => {
        const data = message.data;
        if (data.progress !== undefined) {
          $("solving-progress").value = Math.round(100 * data.progress);
          return;
        }
        worker.terminate();
        if (data.solution) resolve(data.solution);
        else reject(new Error(data.error));
      };
      worker.onerror = () => {
        worker.terminate();
        reject(new Error("worker failed"));
      };
      worker.postMessage({ challenge, difficulty });
    });
    $("solving-progress").value = 100;
    return { challenge, solution };
  } finally {
    $("solving").hidden = true;
  }
}

async function join(event) {
  event.preventDefault();
  const button = $("join-button");
  button.disabled = true;
  say("");
  try {
    const body = enqueueToken ? { enqueue_token: enqueueToken } : {};
    if (eventInfo && eventInfo.entry && eventInfo.entry.challenge === "proof_of_work") {
      body.proof_of_work = await proofOfWork();
    }
    const response = await fetch(`/v1/events/${encodeURIComponent(eventId)}/tickets`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (response.ok) {
      save({ token: answer.token, start_position: answer.position });
      render(answer);
      follow(answer.token);
      return;
    }
    const code = answer.error && answer.error.code;
    if (code === "enqueue_token_required" || code === "invalid_enqueue_token") {
      show("needs-link");
      return;
    }
    const retry = response.headers.get("retry-after");
    const refusals = {
      event_closed: "This sale is closed: no new places are handed out.",
      event_not_found: "This sale does not exist.",
      rate_limited: `Too many attempts from your connection. Try again in ${retry || "a few"} seconds.`,
      queue_unavailable: `The line is busy. Try again in ${retry || "a few"} seconds.`,
      challenge_failed: "The browser check did not pass. Please press the button again.",
      challenge_required: "The browser check did not run. Please reload the page.",
    };
    say(refusals[code] || (answer.error && answer.error.message) || "Joining failed.");
  } catch {
    say("You seem to be offline. Please try again.");
  } finally {
    button.disabled = false;
  }
}

async function start() {
  stopFollowing();
  const ticket = saved();
  if (ticket && ticket.token) return follow(ticket.token);
  show("join");
  try {
    const response = await fetch(`/v1/events/${encodeURIComponent(eventId)}`);
    if (response.status === 404) {
      $("join").hidden = true;
      return say("This sale does not exist.");
    }
    const info = await response.json();
    eventInfo = info;
    if (info.state === "closed") {
      $("join").hidden = true;
      say("This sale is closed: no new places are handed out.");
    } else if (info.entry && info.entry.identity === "enqueue_token" && !enqueueToken) {
      show("needs-link");
    }
  } catch {
    // Joining still works or explains itself.
  }
}

async function loadName() {
  try {
    const response = await fetch(`/v1/events/${encodeURIComponent(eventId)}`);
    if (response.ok) {
      const info = await response.json();
      $("event-name").textContent = info.name || eventId;
      document.title = `${info.name || eventId}: waiting room`;
    }
  } catch {
    // The page works without the name.
  }
}

$("join-form").addEventListener("submit", join);
$("rejoin").addEventListener("click", () => {
  forget();
  lastAnnounced = null;
  start();
});
loadName();
start();
