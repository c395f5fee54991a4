// k6 scenario for load-tests/ops-scenario.sh: valid tokens through the gateway while
// keys rotate, a token is revoked and the config is reloaded. Every request with a
// valid token must get 200; tokens are minted through the sidecar during the run, so
// tokens from before, during and after the rotations are all in use.
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  scenarios: {
    traffic: { executor: 'constant-vus', vus: 8, duration: __ENV.DURATION || '12s' },
  },
  thresholds: { checks: ['rate==1.0'], http_req_failed: ['rate==0'] },
};

const GW = __ENV.GATEWAY;
const KMS = __ENV.SIDECAR;
const ADMIN = __ENV.KMS_ADMIN_TOKEN;
let token = null;

function mint() {
  const res = http.post(`${KMS}/v1/tenants/hospital-a/tokens`,
    JSON.stringify({ sub: `d-${__VU}`, role: 'doctor', ttl_secs: 600 }),
    { headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' }, tags: { name: 'mint' } });
  check(res, { 'mint 201': (r) => r.status === 201 });
  return res.json('token');
}

export default function () {
  // A fresh token every ~200 iterations: old ones stay in use in other VUs.
  if (token === null || Math.random() < 0.005) {
    token = mint();
  }
  const res = http.get(`${GW}/doctors/patients/p-100/records`, { headers: { Authorization: `Bearer ${token}` }, tags: { name: 'records' } });
  check(res, { 'valid token 200': (r) => r.status === 200 });
}
