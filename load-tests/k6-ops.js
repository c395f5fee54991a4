// k6 scenario for load-tests/ops-scenario.sh: valid tokens through the gateway while
// keys rotate, a token is revoked and the config is reloaded. Every request with a
// valid token must get 200; tokens are minted through the sidecar during the run, so
// tokens from before, during and after the rotations are all in use. Odd VUs carry
// nested JWE tokens (RSA-OAEP-256 around RS256); now and then a VU mints a one-time
// insurer JWE and uses it twice: 200, then 401 token_replayed.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

export const options = {
  scenarios: {
    traffic: { executor: 'constant-vus', vus: 8, duration: __ENV.DURATION || '12s' },
  },
  thresholds: { checks: ['rate==1.0'], http_req_failed: ['rate==0'], one_time_replays: ['count>0'] },
};

const GW = __ENV.GATEWAY;
const KMS = __ENV.SIDECAR;
const ADMIN = __ENV.KMS_ADMIN_TOKEN;
const jweRequests = new Counter('jwe_requests');
const replays = new Counter('one_time_replays');
let token = null;

function mint(role, encrypt, ttl) {
  const res = http.post(`${KMS}/v1/tenants/hospital-a/tokens`,
    JSON.stringify({ sub: `d-${__VU}`, role, ttl_secs: ttl, encrypt }),
    { headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' }, tags: { name: 'mint' } });
  check(res, { 'mint 201': (r) => r.status === 201 });
  return res.json('token');
}

export default function () {
  const encrypted = __VU % 2 === 1;
  // A fresh token every ~200 iterations: old ones stay in use in other VUs.
  if (token === null || Math.random() < 0.005) {
    token = mint('doctor', encrypted, 600);
  }
  const res = http.get(`${GW}/doctors/patients/p-100/records`, { headers: { Authorization: `Bearer ${token}` }, tags: { name: 'records' } });
  if (!check(res, { 'valid token 200': (r) => r.status === 200 })) {
    console.error(`valid ${encrypted ? 'JWE' : 'JWS'} token refused: ${res.status} ${res.body}`);
  }
  if (encrypted) {
    jweRequests.add(1);
  }
  if (Math.random() < 0.01) {
    const once = mint('insurer', true, 120);
    const url = `${GW}/insurance/patients/p-100/summary`;
    const auth = { Authorization: `Bearer ${once}` };
    const first = http.get(url, { headers: auth, tags: { name: 'one-time' } });
    check(first, { 'one-time first use 200': (r) => r.status === 200 });
    const second = http.get(url, { headers: auth, tags: { name: 'one-time replay' }, responseCallback: http.expectedStatuses(401) });
    check(second, { 'one-time second use 401 token_replayed': (r) => r.status === 401 && r.json('reason') === 'token_replayed' });
    replays.add(1);
  }
}
