//! Tenant isolation: one tenant's data is never reachable from another.

use reqwest::{Method, StatusCode};
use upstreams::Service;

use crate::support::{assert_error, notes, start, who, Reply};

/// Fails if `reply` contains any of hospital-a's notes for p-100.
#[track_caller]
fn assert_no_leak(reply: &Reply, secrets: &[String]) {
    for secret in secrets {
        assert!(!reply.text.contains(secret.as_str()), "leaked: {}", reply.text);
    }
    assert!(!reply.text.contains("hospital-a"), "leaked: {}", reply.text);
}

#[tokio::test]
async fn hospital_b_never_sees_hospital_a() {
    let app = start().await;
    let a_doctor = Some(who("d-1", "hospital-a", "doctor"));
    let a_view = app.get(Service::Doctor, "/doctors/patients/p-100/records", a_doctor).await;
    let secrets = notes(&a_view);
    assert_eq!(secrets.len(), 2);

    let b_doctor = Some(who("d-9", "hospital-b", "doctor"));
    let b_all_roles = Some(who("p-100", "hospital-b", "patient,doctor,lab,insurer"));
    let reads = [
        (Service::Patient, "/patients/p-100/records", b_doctor),
        (Service::Patient, "/patients/p-100/records", b_all_roles),
        (Service::Patient, "/patients/p-100/records", Some(who("p-100", "hospital-b", "patient"))),
        (Service::Doctor, "/doctors/patients/p-100/records", b_doctor),
        (Service::Insurance, "/insurance/patients/p-100/summary", b_all_roles),
    ];
    for (service, path, caller) in reads {
        let reply = app.get(service, path, caller).await;
        assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
        assert_no_leak(&reply, &secrets);
    }

    let put = app
        .call(
            Service::Doctor,
            Method::PUT,
            "/doctors/patients/p-100/records/r-1",
            b_doctor,
            Some(r#"{"note":"overwritten from hospital-b"}"#),
        )
        .await;
    assert_error(&put, StatusCode::NOT_FOUND, "not_found");
    let post = app
        .call(
            Service::Lab,
            Method::POST,
            "/labs/results",
            b_all_roles,
            Some(r#"{"patient_id":"p-100","test":"hba1c","value":"9.9%"}"#),
        )
        .await;
    assert_error(&post, StatusCode::NOT_FOUND, "not_found");

    // hospital-a's data is untouched.
    let after = app.get(Service::Doctor, "/doctors/patients/p-100/records", a_doctor).await;
    assert_eq!(after.json, a_view.json);
}

#[tokio::test]
async fn same_record_id_in_two_tenants_stays_separate() {
    let app = start().await;
    let a_doctor = Some(who("d-1", "hospital-a", "doctor"));
    let b_doctor = Some(who("d-9", "hospital-b", "doctor"));
    let before = app.get(Service::Doctor, "/doctors/patients/p-100/records", a_doctor).await;

    let put = app
        .call(
            Service::Doctor,
            Method::PUT,
            "/doctors/patients/p-200/records/r-1",
            b_doctor,
            Some(r#"{"note":"hospital-b only"}"#),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(put.json["patient_id"], "p-200");

    let b_view = app.get(Service::Doctor, "/doctors/patients/p-200/records", b_doctor).await;
    assert_eq!(b_view.json["tenant"], "hospital-b");
    assert!(notes(&b_view).contains(&"hospital-b only".to_owned()));
    assert_no_leak(&b_view, &notes(&before));

    let after = app.get(Service::Doctor, "/doctors/patients/p-100/records", a_doctor).await;
    assert_eq!(after.json, before.json);
    assert!(!after.text.contains("hospital-b only"));
}
