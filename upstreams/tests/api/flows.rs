//! Cross-service flows over the shared store.

use reqwest::{Method, StatusCode};
use upstreams::Service;

use crate::support::{assert_error, notes, start, who};

#[tokio::test]
async fn doctor_update_is_visible_to_patient() {
    let app = start().await;
    let doctor = Some(who("d-7", "hospital-a", "doctor"));
    let read = app.get(Service::Doctor, "/doctors/patients/p-100/records", doctor).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.json["service"], "doctor");
    assert_eq!(read.served_by.as_deref(), Some("doctor"));
    let id = read.json["records"][0]["id"].as_str().unwrap().to_owned();

    let put = app
        .call(
            Service::Doctor,
            Method::PUT,
            &format!("/doctors/patients/p-100/records/{id}"),
            doctor,
            Some(r#"{"note":"Blood pressure rechecked: 118/76."}"#),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(put.json["id"], id.as_str());
    assert_eq!(put.json["patient_id"], "p-100");
    assert_eq!(put.json["note"], "Blood pressure rechecked: 118/76.");
    assert_eq!(put.json["updated_by"], "d-7");

    let seen = app.get(Service::Patient, "/patients/p-100/records", Some(who("p-100", "hospital-a", "patient"))).await;
    assert_eq!(seen.status, StatusCode::OK);
    let record = seen.json["records"].as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).unwrap().clone();
    assert_eq!(record["note"], "Blood pressure rechecked: 118/76.");
    assert_eq!(record["updated_by"], "d-7");

    // Unknown record, or a record of another patient: 404.
    for path in [
        "/doctors/patients/p-100/records/r-999",
        "/doctors/patients/p-101/records/r-1",
        "/doctors/patients/p-999/records/r-1",
    ] {
        let reply = app.call(Service::Doctor, Method::PUT, path, doctor, Some(r#"{"note":"x"}"#)).await;
        assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn lab_result_shows_in_patient_records() {
    let app = start().await;
    let posted = app
        .call(
            Service::Lab,
            Method::POST,
            "/labs/results",
            Some(who("l-3", "hospital-a", "lab")),
            Some(r#"{"patient_id":"p-101","test":"hba1c","value":"5.4%"}"#),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.text);
    assert_eq!(posted.served_by.as_deref(), Some("lab"));
    assert_eq!(posted.json["kind"], "lab_result");
    assert_eq!(posted.json["patient_id"], "p-101");
    assert_eq!(posted.json["updated_by"], "l-3");
    let note = posted.json["note"].as_str().unwrap();
    assert!(note.contains("hba1c") && note.contains("5.4%"), "{note}");
    let id = posted.json["id"].as_str().unwrap();

    let seen = app.get(Service::Patient, "/patients/p-101/records", Some(who("p-101", "hospital-a", "patient"))).await;
    let records = seen.json["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    let ids: Vec<&str> = records.iter().filter_map(|r| r["id"].as_str()).collect();
    assert!(ids.contains(&id));

    // Ids stay unique across the whole tenant.
    let mut all: Vec<String> = Vec::new();
    for p in ["p-100", "p-101"] {
        let r = app
            .get(Service::Doctor, &format!("/doctors/patients/{p}/records"), Some(who("d-1", "hospital-a", "doctor")))
            .await;
        all.extend(r.json["records"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()));
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "duplicate record ids: {all:?}");

    let missing = app
        .call(
            Service::Lab,
            Method::POST,
            "/labs/results",
            Some(who("l-3", "hospital-a", "lab")),
            Some(r#"{"patient_id":"p-999","test":"hba1c","value":"5.4%"}"#),
        )
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn insurer_summary_has_no_notes() {
    let app = start().await;
    let doctor_view =
        app.get(Service::Doctor, "/doctors/patients/p-100/records", Some(who("d-1", "hospital-a", "doctor"))).await;
    let summary = app
        .get(Service::Insurance, "/insurance/patients/p-100/summary", Some(who("i-1", "hospital-a", "insurer")))
        .await;
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.text);
    assert_eq!(summary.served_by.as_deref(), Some("insurance"));
    assert_eq!(summary.json["service"], "insurance");
    assert_eq!(summary.json["tenant"], "hospital-a");
    assert_eq!(summary.json["patient_id"], "p-100");
    assert_eq!(summary.json["record_count"], 2);
    let kinds = summary.json["kinds"].as_array().unwrap();
    assert!(kinds.iter().any(|k| k == "visit"));
    assert!(summary.json.get("records").is_none());
    assert!(!summary.text.contains("note"));
    for note in notes(&doctor_view) {
        assert!(!summary.text.contains(&note), "summary leaked {note:?}");
    }
}
