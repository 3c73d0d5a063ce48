// The fan's waiting page: join, then follow the ticket live over EventSource
// (GET /v1/tickets/{token}/events), falling back to polling GET /v1/tickets/{token}
// when streaming fails. The ticket is kept in localStorage, so a reload keeps the place.
// An event that admits only fans the ticket site vouches for is joined with the
// enqueue token the site put in the link (/events/{id}?enqueue_token=...). An event that
// asks for a proof of work gets one solved in a Web Worker (assets/pow-worker.js) before
// each join. A scheduled sale shows when its line opens; a ticket in its pre-queue
// shows a countdown to the start and follows the line once it has started, each page
// at a random moment of a few seconds after the start (a hundred thousand pages
// reconnecting in the same millisecond would be a thundering herd). Every word comes
// from i18n.js.
"use strict";

const eventId = decodeURIComponent(location.pathname.split("/")[2] || "");
const enqueueToken = new URLSearchParams(location.search).get("enqueue_token");
if (enqueueToken) {
  // Out of the address bar, the history and later Referer headers: the pass is the fan's.
  history.replaceState(null, "", location.pathname);
}
const storageKey = `waiting-room.ticket.${eventId}`;
const POLL_MS = 2000;
const TERMINAL = ["active", "expired", "abandoned", "released", "used"];
// Pages reconnect at a random moment this long after the start.
const OPENING_SPREAD_MS = 10000;
// While the draw is being made, each page looks again after 2 to 5 s.
const DRAWING_RETRY_MS = [2000, 5000];
const { t } = i18n;

const $ = (id) => document.getElementById(id);
const sections = ["join", "needs-link", "prequeue", "waiting", "active", "ended"];
let source = null;
let pollTimer = null;
let countdownTimer = null;
let prequeueTimer = null;
let reconnectTimer = null;
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
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  clearInterval(prequeueTimer);
  prequeueTimer = null;
}

function formatWait(seconds) {
  if (seconds === null || seconds === undefined) return t("wait.paused");
  if (seconds < 60) return t("wait.under_minute");
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return t("wait.minutes", { minutes });
  return t("wait.hours", { hours: Math.floor(minutes / 60), minutes: minutes % 60 });
}

const randomBetween = (low, high) => low + Math.random() * (high - low);

// A ticket waiting for the start: count down, then follow the line from a random moment
// of the spread after the start (or, while the draw is being made, a little later).
function prequeued(status, token) {
  stopFollowing();
  show("prequeue");
  const starts = Date.parse(status.sale_starts_at);
  $("prequeue-starts").textContent = t("prequeue.starts", { time: i18n.formatTime(status.sale_starts_at) });
  $("prequeue-order").textContent =
    status.queue_number === null || status.queue_number === undefined
      ? t("prequeue.drawn")
      : t("prequeue.fifo", { number: i18n.formatNumber(status.queue_number) });
  const tick = () => {
    const left = starts - Date.now();
    $("prequeue-countdown").textContent = left > 0 ? i18n.formatCountdown(left) : t("prequeue.drawing");
  };
  tick();
  prequeueTimer = setInterval(tick, 1000);
  const wait = Date.now() < starts
    ? starts - Date.now() + randomBetween(0, OPENING_SPREAD_MS)
    : randomBetween(...DRAWING_RETRY_MS);
  reconnectTimer = setTimeout(() => follow(token), wait);
}

function render(status) {
  if (TERMINAL.includes(status.state)) return finish(status);
  if (status.state === "prequeued") return prequeued(status, (saved() || {}).token);
  const ticket = saved() || {};
  // Progress is measured from the largest position this device has seen.
  const start = Math.max(ticket.start_position || 0, status.position);
  if (start !== ticket.start_position) save({ ...ticket, start_position: start });
  show("waiting");
  $("queue-number").textContent = i18n.formatNumber(status.queue_number);
  $("position").textContent = i18n.formatNumber(status.position);
  $("wait").textContent = formatWait(status.estimated_wait_seconds);
  const done = start > 0 ? Math.round((100 * (start - status.position)) / start) : 100;
  $("progress").value = done;
  $("progress").textContent = `${done}%`;
  if (status.position !== lastAnnounced) {
    lastAnnounced = status.position;
    $("announcer").textContent =
      status.position === 0
        ? t("announce.next")
        : t("announce.ahead", { count: i18n.formatNumber(status.position) });
  }
}

function finish(status) {
  stopFollowing();
  if (status.state === "active") {
    show("active");
    // An event in front of a site sends the fan there, admission token in hand.
    $("reserve").href = status.return_url || status.reservation_url || "#";
    // replace(): Back must not land here again and bounce the fan forward once more.
    if (status.return_url) location.replace(status.return_url);
    $("announcer").textContent = t("announce.turn");
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
  const known = ["expired", "abandoned", "released", "used"];
  show("ended");
  $("ended-message").textContent = t(known.includes(status.state) ? `ended.${status.state}` : "ended.invalid");
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
    $("connection").textContent = t("waiting.live");
  });
  source.addEventListener("position", (event) => render(JSON.parse(event.data)));
  // Sent once, then the stream ends: the page reconnects after the start by itself.
  source.addEventListener("prequeued", (event) => prequeued(JSON.parse(event.data), token));
  for (const name of TERMINAL) {
    source.addEventListener(name, (event) => finish(JSON.parse(event.data)));
  }
  source.addEventListener("error", () => {
    // Refused (bad token, too many streams) or broken for good: poll instead. A stream
    // that was open reconnects by itself (the server sends a retry hint).
    if (!source) return;
    if (!opened || source.readyState === EventSource.CLOSED) {
      $("connection").textContent = t("waiting.polling");
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
      say(t("message.ticket_invalid"));
      return start();
    }
    if (response.ok) {
      const status = await response.json();
      render(status);
      if (TERMINAL.includes(status.state) || status.state === "prequeued") return;
      say("");
    } else {
      say(t("message.refresh_failed"));
    }
  } catch {
    say(t("message.offline_retrying"));
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
      save({ token: answer.token, start_position: answer.position || 0 });
      if (answer.state === "prequeued") return prequeued(answer, answer.token);
      render(answer);
      follow(answer.token);
      return;
    }
    const code = answer.error && answer.error.code;
    if (code === "enqueue_token_required" || code === "invalid_enqueue_token") {
      show("needs-link");
      return;
    }
    const params = {
      seconds: response.headers.get("retry-after") || "…",
      time: answer.error && answer.error.prequeue_opens_at
        ? i18n.formatTime(answer.error.prequeue_opens_at)
        : "",
    };
    const known = [
      "event_closed", "event_not_found", "rate_limited", "queue_unavailable",
      "challenge_failed", "challenge_required", "not_open_yet",
    ];
    say(known.includes(code)
      ? t(`refusal.${code}`, params)
      : (answer.error && answer.error.message) || t("message.join_failed"));
  } catch {
    say(t("message.offline"));
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
      return say(t("refusal.event_not_found"));
    }
    const info = await response.json();
    eventInfo = info;
    if (info.state === "closed" || info.phase === "ended") {
      $("join").hidden = true;
      say(t("refusal.event_closed"));
    } else if (info.schedule) {
      showSchedule(info.schedule);
    }
    if (info.state !== "closed" && info.phase !== "ended" && info.entry && info.entry.identity === "enqueue_token" && !enqueueToken) {
      show("needs-link");
    }
  } catch {
    // Joining still works or explains itself.
  }
}

// A scheduled sale: when it starts and in what order; before the line opens, a
// countdown, with the button enabled at the opening.
function showSchedule(schedule) {
  $("schedule").hidden = false;
  $("schedule").textContent = t("join.sale_starts_at", {
    time: i18n.formatTime(schedule.sale_starts_at),
    order: t(`join.order.${schedule.order}`),
  });
  const opens = Date.parse(schedule.prequeue_opens_at);
  if (Date.now() >= opens) return;
  $("join-button").disabled = true;
  $("opens").hidden = false;
  const tick = () => {
    const left = opens - Date.now();
    if (left <= 0) {
      clearInterval(countdownTimer);
      $("opens").hidden = true;
      $("join-button").disabled = false;
      return;
    }
    $("opens-countdown").textContent = `${t("join.opens_at", { time: i18n.formatTime(schedule.prequeue_opens_at) })} ${t("join.opens_in", { countdown: i18n.formatCountdown(left) })}`;
  };
  tick();
  clearInterval(countdownTimer);
  countdownTimer = setInterval(tick, 1000);
}

async function loadName() {
  try {
    const response = await fetch(`/v1/events/${encodeURIComponent(eventId)}`);
    if (response.ok) {
      const info = await response.json();
      $("event-name").textContent = info.name || eventId;
      document.title = t("page.title", { name: info.name || eventId });
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
i18n.ready.then(() => {
  loadName();
  start();
});
