//! Identity, role and ownership checks, public endpoints and hostile input.

use reqwest::{Method, StatusCode};
use serde_json::json;
use upstreams::Service;

use crate::support::{assert_error, notes, start, who};

/// The identity-protected endpoint of each service.
const PROTECTED: [(Service, &str); 4] = [
    (Service::Patient, "/patients/p-100/records"),
    (Service::Doctor, "/doctors/patients/p-100/records"),
    (Service::Lab, "/labs/results"),
    (Service::Insurance, "/insurance/patients/p-100/summary"),
];

#[tokio::test]
async fn public_endpoints_need_no_identity() {
    let app = start().await;
    for service in Service::ALL {
        let health = app.get(service, "/healthz", None).await;
        assert_eq!(health.status, StatusCode::OK);
        assert_eq!(health.text, "ok");
        assert_eq!(health.served_by.as_deref(), Some(service.name()));

        let ping = app.get(service, "/public/ping", None).await;
        assert_eq!(ping.status, StatusCode::OK);
        assert_eq!(ping.json, json!({ "service": service.name(), "pong": true }));

        let echo = app.get(service, "/echo/a/b?x=1", None).await;
        assert_eq!(echo.status, StatusCode::OK);
        assert_eq!(echo.json["service"], service.name());
        assert_eq!(echo.json["method"], "GET");
        assert_eq!(echo.json["path"], "/echo/a/b");
        assert!(echo.json["headers"]["host"].is_string());
    }
    let echo = app.get(Service::Lab, "/echo", Some(who("l-1", "hospital-a", "lab"))).await;
    assert_eq!(echo.json["path"], "/echo");
    assert_eq!(echo.json["headers"]["x-user-id"], "l-1");
    assert_eq!(echo.json["headers"]["x-tenant-id"], "hospital-a");
}

#[tokio::test]
async fn missing_identity_is_401() {
    let app = start().await;
    for (service, path) in PROTECTED {
        let method = if service == Service::Lab { Method::POST } else { Method::GET };
        let reply = app.call(service, method, path, None, None).await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, "identity_headers_missing");
        assert_eq!(reply.served_by.as_deref(), Some(service.name()));
    }
    // A blank role header counts as missing.
    let reply = app
        .call(Service::Doctor, Method::GET, "/doctors/patients/p-100/records", Some(who("d-1", "hospital-a", "")), None)
        .await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "identity_headers_missing");
}

#[tokio::test]
async fn wrong_role_is_403() {
    let app = start().await;
    let cases = [
        (Service::Patient, Method::GET, "/patients/p-100/records", "insurer"),
        (Service::Patient, Method::GET, "/patients/p-100/records", "lab"),
        (Service::Doctor, Method::GET, "/doctors/patients/p-100/records", "patient"),
        (Service::Doctor, Method::PUT, "/doctors/patients/p-100/records/r-1", "lab"),
        (Service::Lab, Method::POST, "/labs/results", "doctor"),
        (Service::Insurance, Method::GET, "/insurance/patients/p-100/summary", "doctor"),
        (Service::Insurance, Method::GET, "/insurance/patients/p-100/summary", "admin"),
    ];
    for (service, method, path, role) in cases {
        let body = (method != Method::GET).then_some(r#"{"note":"x","patient_id":"p-100","test":"t","value":"v"}"#);
        let reply = app.call(service, method, path, Some(who("p-100", "hospital-a", role)), body).await;
        assert_error(&reply, StatusCode::FORBIDDEN, "forbidden_role");
    }
}

#[tokio::test]
async fn patient_reads_only_own_records() {
    let app = start().await;
    let own = app.get(Service::Patient, "/patients/p-100/records", Some(who("p-100", "hospital-a", "patient"))).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(own.json["service"], "patient");
    assert_eq!(own.json["tenant"], "hospital-a");
    assert_eq!(own.json["patient_id"], "p-100");
    assert_eq!(notes(&own).len(), 2);
    assert!(own.json["records"].as_array().unwrap().iter().all(|r| r["patient_id"] == "p-100"));

    let other = app.get(Service::Patient, "/patients/p-100/records", Some(who("p-101", "hospital-a", "patient"))).await;
    assert_error(&other, StatusCode::FORBIDDEN, "forbidden_owner");

    // Multi-role header: any matching role is enough.
    let multi = app
        .get(Service::Patient, "/patients/p-101/records", Some(who("p-101", "hospital-a", "insurer, patient")))
        .await;
    assert_eq!(multi.status, StatusCode::OK);

    // Doctors may read any patient of their tenant through the patient service.
    let doctor = app.get(Service::Patient, "/patients/p-101/records", Some(who("d-1", "hospital-a", "doctor"))).await;
    assert_eq!(doctor.status, StatusCode::OK);
    assert_eq!(notes(&doctor).len(), 1);
}

#[tokio::test]
async fn hostile_input_gets_clean_4xx_json() {
    let app = start().await;
    let doctor = Some(who("d-1", "hospital-a", "doctor"));
    let lab = Some(who("l-1", "hospital-a", "lab"));
    let put = "/doctors/patients/p-100/records/r-1";
    for body in ["{not json", r#"{"note": 5}"#, r#"{"text":"x"}"#, "[]", ""] {
        let reply = app.call(Service::Doctor, Method::PUT, put, doctor, Some(body)).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
    }
    let long = format!(r#"{{"note":"{}"}}"#, "x".repeat(upstreams::roles::MAX_TEXT + 1));
    let reply = app.call(Service::Doctor, Method::PUT, put, doctor, Some(&long)).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
    // No content type at all.
    let reply = app.call(Service::Doctor, Method::PUT, put, doctor, None).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");

    for body in [r#"{"patient_id":"p-100"}"#, r#"{"patient_id":"","test":"t","value":"v"}"#, "null"] {
        let reply = app.call(Service::Lab, Method::POST, "/labs/results", lab, Some(body)).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
    }

    // Unknown routes, other services' routes and wrong methods stay JSON.
    let reply = app.get(Service::Patient, "/nope", doctor).await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(reply.served_by.as_deref(), Some("patient"));
    let reply = app.get(Service::Patient, "/doctors/patients/p-100/records", doctor).await;
    assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
    let reply = app.call(Service::Lab, Method::GET, "/labs/results", lab, None).await;
    assert_error(&reply, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}
