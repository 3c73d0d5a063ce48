// Queue entry load: fans join an event (unique user ids), or, with TARGET=healthz, the
// same load against GET /healthz to measure the server's no-op ceiling on this machine.
//
//   BASE_URL     waiting-room URL (default http://127.0.0.1:8080)
//   EVENT_ID     event to join (must exist and be open)
//   TARGET       join | healthz (default join)
//   MODE         vus (closed loop, VUS concurrent connections, DURATION)
//                | rate (ramping arrival rate up to RATE per second over DURATION)
//   VUS          concurrency for MODE=vus (default 64)
//   RATE         peak arrival rate for MODE=rate (default 1000)
//   DURATION     seconds (default 20)
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const EVENT_ID = __ENV.EVENT_ID || 'bench';
const TARGET = __ENV.TARGET || 'join';
const MODE = __ENV.MODE || 'vus';
const VUS = parseInt(__ENV.VUS || '64', 10);
const RATE = parseInt(__ENV.RATE || '1000', 10);
const DURATION = parseInt(__ENV.DURATION || '20', 10);
const RUN_ID = __ENV.RUN_ID || `${Date.now()}`;

const scenario = MODE === 'rate'
  ? {
      executor: 'ramping-arrival-rate',
      startRate: Math.max(1, Math.floor(RATE / 10)),
      timeUnit: '1s',
      preAllocatedVUs: VUS,
      maxVUs: Math.max(VUS, 2048),
      stages: [
        { target: RATE, duration: `${Math.ceil(DURATION / 2)}s` },
        { target: RATE, duration: `${Math.floor(DURATION / 2)}s` },
      ],
    }
  : { executor: 'constant-vus', vus: VUS, duration: `${DURATION}s` };

export const options = {
  scenarios: { entry: scenario },
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: ['p(95)<15', 'p(99)<25'],
  },
};

const joinUrl = `${BASE_URL}/v1/events/${EVENT_ID}/tickets`;
const healthUrl = `${BASE_URL}/healthz`;
const headers = { 'Content-Type': 'application/json', 'X-Forwarded-For': '' };
const params = { headers, tags: { name: 'join' } };
const healthParams = { tags: { name: 'healthz' } };

// The generator shares the machine's two cores with the server, so the join does as little
// JavaScript per request as it can: the body is concatenated from a per-VU prefix and a
// counter (JSON.stringify and the k6/execution getters cost k6 ~70 µs per request here).
// User ids stay unique: VU ids are unique in a test, RUN_ID is unique per run.
// Each join comes from its own client address (X-Forwarded-For, believed from loopback:
// the local stack sets TRUSTED_PROXIES), so the shared rate limits run on every join
// and refuse none: the measurement includes their cost.
let userPrefix;
let iteration = 0;

export default function () {
  if (TARGET === 'healthz') {
    const response = http.get(healthUrl, healthParams);
    check(response, { 'status 200': (r) => r.status === 200 });
    return;
  }
  if (userPrefix === undefined) userPrefix = `{"user_id":"k6-${RUN_ID}-${exec.vu.idInTest}-`;
  iteration += 1;
  headers['X-Forwarded-For'] = `10.${exec.vu.idInTest & 255}.${(iteration >> 8) & 255}.${iteration & 255}`;
  const response = http.post(joinUrl, userPrefix + iteration + '"}', params);
  check(response, { 'status 201': (r) => r.status === 201 });
}
