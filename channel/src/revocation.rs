//! The revocation feed: `GET /internal/v1/revocations?after=&wait=&epoch=` answers a
//! [`FeedPage`] of [`RevocationEvent`]s. Positions are numbered within an `epoch`
//! (one sidecar store and run); a reader that sees another epoch reads from the start.

use serde::{Deserialize, Serialize};

/// Longest long-poll the feed grants (seconds); a larger `wait` is cut to this.
pub const MAX_WAIT_SECS: u64 = 30;

/// One entry of the revocation feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEvent {
    /// Feed position.
    pub seq: u64,
    /// Tenant.
    pub tenant: String,
    /// A single token's `jti` ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// ... and its `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// A subject (with `before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Watermark: refuse tokens issued up to this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// The watermark is set to `before` even if that is lower (0 removes it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lower: bool,
    /// The tenant was deleted (with a tenant-wide `before`): drop its keys too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// A key removed by an emergency rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// One answer of the feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPage {
    /// Identity of the numbering: changes when the store is replaced, restored or
    /// re-opened, and then every position held by a reader is meaningless.
    pub epoch: String,
    /// Events after the reader's position (expired single-token entries left out).
    pub events: Vec<RevocationEvent>,
    /// The position to ask from next.
    pub cursor: u64,
    /// The feed's last position when this page was read.
    pub last: u64,
}

/// The feed's query string: the reader's position, how long it may wait for news
/// (seconds, at most [`MAX_WAIT_SECS`]) and the epoch its position belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedQuery {
    /// The reader's position (0: from the start).
    #[serde(default)]
    pub after: u64,
    /// Long-poll for up to this many seconds when nothing is newer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
    /// The epoch of `after`; without it (or with another) the feed answers at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn feed_page_json_is_pinned() {
        let sample = json!({
            "epoch": "store.run",
            "events": [
                {"seq": 1, "tenant": "t", "jti": "j", "exp": 200},
                {"seq": 2, "tenant": "t", "subject": "s", "before": 100, "lower": true},
                {"seq": 3, "tenant": "gone", "before": 150, "deleted": true},
                {"seq": 4, "tenant": "t", "kid": "t-sig-1"}
            ],
            "cursor": 4,
            "last": 5
        });
        let page = FeedPage {
            epoch: "store.run".into(),
            events: vec![
                RevocationEvent {
                    seq: 1,
                    tenant: "t".into(),
                    jti: Some("j".into()),
                    exp: Some(200),
                    ..Default::default()
                },
                RevocationEvent {
                    seq: 2,
                    tenant: "t".into(),
                    subject: Some("s".into()),
                    before: Some(100),
                    lower: true,
                    ..Default::default()
                },
                RevocationEvent {
                    seq: 3,
                    tenant: "gone".into(),
                    before: Some(150),
                    deleted: true,
                    ..Default::default()
                },
                RevocationEvent { seq: 4, tenant: "t".into(), kid: Some("t-sig-1".into()), ..Default::default() },
            ],
            cursor: 4,
            last: 5,
        };
        assert_eq!(serde_json::to_value(&page).unwrap(), sample);
        assert_eq!(serde_json::from_value::<FeedPage>(sample).unwrap(), page);
    }

    #[test]
    fn feed_query_json_is_pinned() {
        let q = FeedQuery { after: 7, wait: Some(25), epoch: Some("e".into()) };
        let sample = json!({"after": 7, "wait": 25, "epoch": "e"});
        assert_eq!(serde_json::to_value(&q).unwrap(), sample);
        assert_eq!(serde_json::from_value::<FeedQuery>(sample).unwrap(), q);
        assert_eq!(serde_json::to_value(FeedQuery::default()).unwrap(), json!({"after": 0}), "no epoch: none sent");
        assert_eq!(serde_json::from_value::<FeedQuery>(json!({})).unwrap(), FeedQuery::default());
    }
}
