// k6 scenario: valid tokens through the gateway, every response must be 200.
// Usage: TOKEN=... BASE=http://127.0.0.1:8080 k6 run load-tests/k6-valid-tokens.js
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  vus: 16,
  duration: __ENV.DURATION || '10s',
  thresholds: { checks: ['rate==1.0'], http_req_failed: ['rate==0'] },
};

const base = __ENV.BASE || 'http://127.0.0.1:8080';
const path = __ENV.PATH_UNDER_TEST || '/echo/secure';

export default function () {
  const res = http.get(`${base}${path}`, { headers: { Authorization: `Bearer ${__ENV.TOKEN}` } });
  check(res, { 'status is 200': (r) => r.status === 200 });
}
