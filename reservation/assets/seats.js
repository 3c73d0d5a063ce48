// The fan's seat page: the live seat map (GET /v1/events/{id}/seats/events), holding
// seats with the ticket token that came from the waiting page (URL fragment), then
// confirming or releasing while the reservation's status streams in.
"use strict";

const eventId = decodeURIComponent(location.pathname.split("/")[2] || "");
const tokenKey = `reservation.ticket.${eventId}`;
const reservationKey = `reservation.current.${eventId}`;
const waitingRoom = document.body.dataset.waitingRoom;
const MAX_SEATS = 4;
const FINAL = ["confirmed", "released", "expired"];

const $ = (id) => document.getElementById(id);
const selected = new Set();
let seatMap = [];
let reservation = null;
let reservationSource = null;
let countdownTimer = null;

function say(text) {
  $("message").textContent = text || "";
}

function announce(text) {
  $("announcer").textContent = text;
}

// The token travels in the fragment (never sent to a server); keep it for reloads.
function ticketToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    localStorage.setItem(tokenKey, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  return localStorage.getItem(tokenKey);
}

const token = ticketToken();
$("back").href = `${waitingRoom}/events/${encodeURIComponent(eventId)}`;

function renderMap() {
  const map = $("map");
  map.replaceChildren();
  const rows = new Map();
  for (const seat of seatMap) {
    if (!rows.has(seat.row_index)) rows.set(seat.row_index, []);
    rows.get(seat.row_index).push(seat);
  }
  const mine = new Set(reservation && reservation.status === "held" ? reservation.seat_ids : []);
  for (const seats of rows.values()) {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("span");
    label.className = "row-label";
    label.textContent = seats[0].seat_id.split("-")[0];
    label.setAttribute("aria-hidden", "true");
    row.append(label);
    for (const seat of seats) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "seat";
      button.dataset.seat = seat.seat_id;
      button.textContent = seat.seat_number;
      const taken = seat.state !== "available";
      if (selected.has(seat.seat_id) && taken) selected.delete(seat.seat_id);
      button.disabled = taken || Boolean(reservation && reservation.status === "held");
      if (mine.has(seat.seat_id)) button.classList.add("mine");
      else if (taken) button.classList.add("taken");
      button.setAttribute("aria-pressed", String(selected.has(seat.seat_id)));
      const state = mine.has(seat.seat_id) ? "held by you" : taken ? "taken" : "available";
      button.setAttribute("aria-label", `Row ${label.textContent} seat ${seat.seat_number}, ${state}`);
      button.addEventListener("click", () => toggle(seat.seat_id));
      row.append(button);
    }
    map.append(row);
  }
  $("selection").textContent = selected.size ? [...selected].join(", ") : "none";
  $("hold").disabled = selected.size === 0 || !token || Boolean(reservation && reservation.status === "held");
}

function toggle(seatId) {
  if (selected.has(seatId)) {
    selected.delete(seatId);
  } else if (selected.size >= MAX_SEATS) {
    say(`You can choose up to ${MAX_SEATS} seats.`);
    return;
  } else {
    selected.add(seatId);
  }
  say("");
  renderMap();
}

function followSeats() {
  // With diffs, a hold sends the seats it changed, not the whole map.
  const source = new EventSource(`/v1/events/${encodeURIComponent(eventId)}/seats/events?diffs=true`);
  source.addEventListener("seats", (event) => {
    seatMap = JSON.parse(event.data).seats;
    renderMap();
  });
  source.addEventListener("seat_changes", (event) => {
    const changed = new Map(JSON.parse(event.data).seats.map((seat) => [seat.seat_id, seat]));
    seatMap = seatMap.map((seat) => changed.get(seat.seat_id) || seat);
    renderMap();
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) say("The seat map is not updating. Please reload.");
  });
}

const notActive = {
  waiting: "It is not your turn yet. Keep your place in the waiting room.",
  expired: "Your session has expired: your turn is over.",
  used: "This ticket has already been used to buy seats.",
  abandoned: "Your place in line was given up.",
};

async function hold() {
  say("");
  $("hold").disabled = true;
  const seats = [...selected];
  try {
    const response = await fetch(`/v1/events/${encodeURIComponent(eventId)}/reservations`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ seat_ids: seats }),
    });
    const body = await response.json();
    if (response.status === 201) {
      selected.clear();
      showReservation(body);
      announce(`Seats ${body.seat_ids.join(", ")} are held for you.`);
      return;
    }
    const code = body.error && body.error.code;
    if (code === "seats_unavailable") {
      for (const seat of body.error.seat_ids || []) selected.delete(seat);
      say(`Sorry, just taken: ${(body.error.seat_ids || []).join(", ")}. Please choose other seats.`);
    } else if (code === "reservation_exists") {
      showReservation(body.error.reservation || body);
      say("You already hold seats: here they are.");
    } else if (code === "ticket_not_active") {
      say(notActive[body.error.state] || body.error.message);
    } else if (code === "invalid_token") {
      say("Your ticket is not valid for this sale. Please join the line again.");
    } else {
      say(body.error ? body.error.message : "Holding failed; please try again.");
    }
  } catch {
    say("You seem to be offline. Please try again.");
  }
  renderMap();
}

function showReservation(next) {
  reservation = next;
  localStorage.setItem(reservationKey, next.reservation_id);
  $("reservation").hidden = false;
  $("held-seats").textContent = next.seat_ids.join(", ");
  $("reservation-status").textContent = next.status;
  const held = next.status === "held";
  $("confirm").hidden = !held;
  $("release").hidden = !held;
  $("hold-timer").hidden = !held;
  clearInterval(countdownTimer);
  if (held) {
    const until = Date.parse(next.hold_expires_at);
    const tick = () => {
      const left = Math.max(0, Math.round((until - Date.now()) / 1000));
      $("hold-countdown").textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
    followReservation(next.reservation_id);
  } else {
    if (reservationSource) reservationSource.close();
    const messages = {
      confirmed: `Confirmed! Seats ${next.seat_ids.join(", ")} are yours.`,
      released: "You released your seats.",
      expired: "Your hold ran out and the seats were released.",
    };
    announce(messages[next.status] || next.status);
    if (next.status !== "confirmed") {
      localStorage.removeItem(reservationKey);
      reservation = null;
      $("reservation").hidden = true;
      say(messages[next.status]);
    }
  }
  renderMap();
}

function followReservation(id) {
  if (reservationSource) reservationSource.close();
  reservationSource = new EventSource(`/v1/reservations/${id}/events`);
  reservationSource.addEventListener("status", (event) => {
    const next = JSON.parse(event.data);
    if (FINAL.includes(next.status)) reservationSource.close();
    if (!reservation || next.status !== reservation.status) showReservation(next);
  });
}

async function finish(method, path) {
  say("");
  try {
    const response = await fetch(path, { method, headers: { authorization: `Bearer ${token}` } });
    const body = await response.json();
    if (response.ok) return showReservation(body);
    say(body.error ? body.error.message : "That did not work; please try again.");
  } catch {
    say("You seem to be offline. Please try again.");
  }
}

$("hold").addEventListener("click", hold);
$("confirm").addEventListener("click", () =>
  finish("POST", `/v1/reservations/${reservation.reservation_id}/confirm`),
);
$("release").addEventListener("click", () =>
  finish("DELETE", `/v1/reservations/${reservation.reservation_id}`),
);

if (!token) {
  say("You need your turn in the waiting room before choosing seats.");
}
followSeats();
const saved = localStorage.getItem(reservationKey);
if (saved) {
  fetch(`/v1/reservations/${saved}`)
    .then((response) => (response.ok ? response.json() : null))
    .then((found) => found && showReservation(found))
    .catch(() => {});
}
