//! Tenant-scoped routes end to end: the real gateway binary, one JWKS per tenant from
//! an in-process key server, an echo upstream. A route (or one of its allow rules)
//! limited to some tenants refuses the others with 403 `forbidden_tenant` before
//! anything reaches the upstream, and passes its own tenants with `X-Tenant-Id` set
//! from the verified token.

use crate::support::Gateway;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use testkit::{claims, jwks, EchoServer, JwksServer, TestKey};

fn config(url_template: &str, echo: std::net::SocketAddr) -> String {
    format!(
        r#"
keys:
  url_template: "{url_template}"
tenants:
  hospital-a: {{ issuer: "https://issuer.test/hospital-a", audiences: [api], algorithms: [ES256] }}
  hospital-b: {{ issuer: "https://issuer.test/hospital-b", audiences: [api], algorithms: [ES256] }}
headers:
  - {{ claim: tenant_id, header: X-Tenant-Id }}
upstreams:
  echo: {{ peers: ["{echo}"] }}
routes:
  - name: b-lab-results
    path: /labs/results
    upstream: echo
    tenants: [hospital-b]
    allow:
      - role: lab
  - name: results
    path: "/patients/{{patient_id}}/results"
    upstream: echo
    allow:
      - {{ role: lab, tenants: [hospital-a] }}
      - {{ role: doctor }}
"#
    )
}

struct Stack {
    gw: Gateway,
    echo: EchoServer,
    a: TestKey,
    b: TestKey,
    _jwks: JwksServer,
}

async fn stack() -> Stack {
    let a = TestKey::load("ec-a.pem", "a-1", Algorithm::ES256);
    let b = TestKey::load("ec-b.pem", "b-1", Algorithm::ES256);
    let jwks_server = JwksServer::start(300).await;
    jwks_server.set("hospital-a", jwks(&[&a]));
    jwks_server.set("hospital-b", jwks(&[&b]));
    let echo = EchoServer::start().await;
    let gw = Gateway::start(&config(&jwks_server.url_template(), echo.addr)).await;
    Stack { gw, echo, a, b, _jwks: jwks_server }
}

impl Stack {
    /// GETs `path` with a token of `tenant` (signed with `key`) and `role`: status,
    /// JSON body, `WWW-Authenticate`.
    async fn get(&self, path: &str, key: &TestKey, tenant: &str, role: &str) -> (u16, Value, Option<String>) {
        let token = key.mint(&claims(tenant, "p-1", json!(role)));
        let resp =
            reqwest::Client::new().get(self.gw.url(path)).bearer_auth(token).send().await.expect("gateway answers");
        let status = resp.status().as_u16();
        let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        (status, resp.json().await.unwrap_or(Value::Null), challenge)
    }

    fn hits(&self) -> usize {
        self.echo.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_scoped_route_refuses_other_tenants() {
    let s = stack().await;
    let before = s.hits();
    let (status, body, challenge) = s.get("/labs/results", &s.a, "hospital-a", "lab").await;
    assert_eq!((status, &body["reason"]), (403, &json!("forbidden_tenant")), "{body}");
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(challenge.as_deref(), Some(r#"Bearer error="insufficient_scope""#));
    assert_eq!(s.hits(), before, "nothing reached the upstream");

    let (status, body, _) = s.get("/labs/results", &s.b, "hospital-b", "lab").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-tenant-id"], "hospital-b");
    // The route's tenant list comes before the roles: the right tenant, a wrong role.
    let (status, body, _) = s.get("/labs/results", &s.b, "hospital-b", "doctor").await;
    assert_eq!((status, &body["reason"]), (403, &json!("forbidden_role")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_rule_can_be_limited_to_tenants() {
    let s = stack().await;
    let (status, body, _) = s.get("/patients/p-1/results", &s.b, "hospital-b", "lab").await;
    assert_eq!((status, &body["reason"]), (403, &json!("forbidden_tenant")), "{body}");
    let (status, body, _) = s.get("/patients/p-1/results", &s.a, "hospital-a", "lab").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-tenant-id"], "hospital-a");
    // An unscoped rule of the same route serves both tenants.
    let (status, body, _) = s.get("/patients/p-1/results", &s.b, "hospital-b", "doctor").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-tenant-id"], "hospital-b");
}

/// A token claiming hospital-b but signed with hospital-a's key is not verified by
/// hospital-b's keys: the tenant claim cannot be borrowed to pass a scoped route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_claim_is_only_believed_with_that_tenants_keys() {
    let s = stack().await;
    let before = s.hits();
    let (status, body, _) = s.get("/labs/results", &s.a, "hospital-b", "lab").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(s.hits(), before);
}
