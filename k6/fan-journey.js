// The whole fan journey with realistic think time: join the line, poll until it is your
// turn, look at the seat map, hold a seat (another one when it was just taken), confirm.
//
//   WR_URL      waiting-room URL (default http://127.0.0.1:8080)
//   RES_URL     reservation URL (default http://127.0.0.1:8081)
//   EVENT_ID    event with a seat layout (created by k6/run.sh fan-journey)
//   FANS        journeys to run (default 1000)
//   VUS         fans in flight at once (default 200)
//   THINK       seconds a fan thinks before each decision (default 1)
//   DURATION    run for this long instead (e.g. 30m), VUS fans at a time (the soak)
//   WAIT_BY     how a fan waits for their turn: poll (default: the status every second),
//               stream (the live SSE stream, which ends at `active`) or mixed (half each)
import http from 'k6/http';
import { sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';

const WR_URL = __ENV.WR_URL || 'http://127.0.0.1:8080';
const RES_URL = __ENV.RES_URL || 'http://127.0.0.1:8081';
const EVENT_ID = __ENV.EVENT_ID || 'journey';
const FANS = parseInt(__ENV.FANS || '1000', 10);
const VUS = parseInt(__ENV.VUS || '200', 10);
const THINK = parseFloat(__ENV.THINK || '1');
const RUN_ID = __ENV.RUN_ID || `${Date.now()}`;
const DURATION = __ENV.DURATION;
const WAIT_BY = __ENV.WAIT_BY || 'poll';

const steps = {
  join: new Trend('step_join', true),
  status: new Trend('step_status', true),
  stream: new Trend('step_stream_connect', true),
  seats: new Trend('step_seats', true),
  reserve: new Trend('step_reserve', true),
  confirm: new Trend('step_confirm', true),
};
const waited = new Trend('time_in_line', true);
const completed = new Counter('journeys_completed');
const refusals = {
  seats_unavailable: new Counter('refusal_seats_unavailable'),
  ticket_not_active: new Counter('refusal_ticket_not_active'),
  other: new Counter('refusal_other'),
};

export const options = {
  scenarios: {
    fans: DURATION
      ? { executor: 'constant-vus', vus: VUS, duration: DURATION }
      : { executor: 'shared-iterations', vus: VUS, iterations: FANS, maxDuration: '10m' },
  },
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
};

const json = { headers: { 'Content-Type': 'application/json' } };
const think = () => sleep(THINK * (0.5 + Math.random()));

function refuse(response) {
  let code = 'other';
  try {
    code = response.json('error.code') || 'other';
  } catch (_) {
    // Not JSON: counted as other.
  }
  (refusals[code] || refusals.other).add(1);
}

// Follows the ticket's live stream until its terminal event; the state it ends in
// ('waiting' if it broke off: the fan polls on).
function streamUntilDecided(token) {
  const response = http.get(`${WR_URL}/v1/tickets/${token}/events`, { timeout: '10m', tags: { name: 'stream' } });
  steps.stream.add(response.timings.waiting);
  if (response.status !== 200) {
    refuse(response);
    return 'waiting';
  }
  const terminal = /event: (active|expired|abandoned|released|used)\n/.exec(response.body || '');
  return terminal ? terminal[1] : 'waiting';
}

export default function () {
  const fan = exec.scenario.iterationInTest;
  const userId = `fan-${RUN_ID}-${fan}`;
  // Each fan from its own address (the local stack trusts loopback as a proxy), so the
  // join rate limits see many clients, as in a real sale.
  const joinParams = {
    headers: { ...json.headers, 'X-Forwarded-For': `10.${(fan >> 16) & 255}.${(fan >> 8) & 255}.${fan & 255}` },
  };
  let response = http.post(`${WR_URL}/v1/events/${EVENT_ID}/tickets`, JSON.stringify({ user_id: userId }), joinParams);
  steps.join.add(response.timings.duration);
  if (response.status !== 201 && response.status !== 200) return refuse(response);
  const token = response.json('token');
  const auth = { headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` } };

  // The first status read comes at once, as the waiting page's does: only a ticket its
  // holder has read takes a slot, so a fan who looked late would wait longer.
  const joinedAt = Date.now();
  let state = 'waiting';
  if (WAIT_BY === 'stream' || (WAIT_BY === 'mixed' && fan % 2 === 1)) {
    state = streamUntilDecided(token);
  }
  for (let first = true; state === 'waiting'; first = false) {
    if (!first) sleep(1);
    response = http.get(`${WR_URL}/v1/tickets/${token}`);
    steps.status.add(response.timings.duration);
    if (response.status !== 200) return refuse(response);
    state = response.json('state');
  }
  waited.add(Date.now() - joinedAt);
  if (state !== 'active') return refusals.ticket_not_active.add(1);

  for (let attempt = 0; attempt < 3; attempt++) {
    response = http.get(`${RES_URL}/v1/events/${EVENT_ID}/seats`);
    steps.seats.add(response.timings.duration);
    const free = response.json('seats').filter((seat) => seat.state === 'available');
    if (free.length === 0) return refusals.seats_unavailable.add(1);
    think();
    const choice = free[Math.floor(Math.random() * free.length)].seat_id;
    response = http.post(`${RES_URL}/v1/events/${EVENT_ID}/reservations`, JSON.stringify({ seat_ids: [choice] }), auth);
    steps.reserve.add(response.timings.duration);
    if (response.status === 201) break;
    refuse(response);
    if (response.status !== 409) return;
  }
  if (response.status !== 201) return;
  think();
  response = http.post(`${RES_URL}/v1/reservations/${response.json('reservation_id')}/confirm`, null, auth);
  steps.confirm.add(response.timings.duration);
  if (response.status !== 200) return refuse(response);
  completed.add(1);
}
