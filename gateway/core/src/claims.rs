//! Claim sets: typed access to the registered claims with range checks done before
//! anything else touches them, and the time, issuer and audience rules.
//!
//! A claim set is read in one strict pass over its JSON (duplicate member names
//! refused at any depth) that builds no map: it notes each top-level member's name
//! and the kind of its value (strings and numbers decoded, borrowed from the payload
//! text), which is all the registered-claim checks need. A member's full
//! [`Value`] is built only when [`Claims::get`] asks for it, once.

use crate::error::AuthError;
use crate::json::{JsonError, Key, Seen, StrOr, StrOrSeed, StrictIgnore};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

/// Largest NumericDate accepted (9999-12-31T23:59:59Z); larger values are refused
/// before any arithmetic so no overflow is reachable.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// Text from the payload: a span of it when unescaped, else decoded.
#[derive(Debug, Clone)]
enum Text {
    Span(Range<usize>),
    Owned(Box<str>),
}

/// A JSON number as the parser gave it.
#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    U(u64),
    F(f64),
}

/// What a member's value is (nested values are checked strictly, not kept).
#[derive(Debug, Clone)]
enum Kind {
    Null,
    Bool,
    Number(Num),
    Str(Text),
    /// An array; whether every element is a string.
    Array(bool),
    Object,
}

/// One top-level member.
#[derive(Debug, Clone)]
struct Member {
    key: Text,
    /// The value's JSON text within the payload.
    value: Range<usize>,
    kind: Kind,
    /// The value, built on first [`Claims::get`].
    parsed: OnceLock<Value>,
}

/// A claim set read strictly, its claims not yet checked: see [`UncheckedClaims::check`].
#[derive(Debug)]
pub struct UncheckedClaims(Claims);

/// A decoded claim set with its registered time claims range-checked.
#[derive(Debug, Clone)]
pub struct Claims {
    raw: Box<str>,
    members: Vec<Member>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

impl PartialEq for Claims {
    fn eq(&self, other: &Self) -> bool {
        self.to_map() == other.to_map()
    }
}

fn offset(raw: &str, part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - raw.as_ptr() as usize;
    start..start + part.len()
}

fn text(raw: &str, s: Cow<'_, str>) -> Text {
    match s {
        Cow::Borrowed(b) => Text::Span(offset(raw, b)),
        Cow::Owned(o) => Text::Owned(o.into_boxed_str()),
    }
}

/// Reads one member value's kind.
struct KindSeed<'r>(&'r str);

impl<'de> DeserializeSeed<'de> for KindSeed<'_> {
    type Value = Kind;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KindSeed<'_> {
    type Value = Kind;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Bool)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Number(Num::I(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Number(Num::U(v)))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Kind, E> {
        StrictIgnore.visit_f64(v).map(|()| Kind::Number(Num::F(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Kind, E> {
        // `v` lies within the member's raw text, itself within the payload.
        Ok(Kind::Str(Text::Span(offset(self.0, v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(Text::Owned(v.into())))
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut all_str = true;
        while let Some(v) = seq.next_element_seed(StrOrSeed)? {
            all_str &= matches!(v, StrOr::Str(_));
        }
        Ok(Kind::Array(all_str))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Kind, A::Error> {
        StrictIgnore.visit_map(map).map(|()| Kind::Object)
    }
}

/// Reads the top-level object's members.
struct Members<'r>(&'r str);

impl<'de> DeserializeSeed<'de> for Members<'de> {
    type Value = Vec<Member>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Member>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Members<'de> {
    type Value = Vec<Member>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Member>, A::Error> {
        use serde::de::Error as _;
        let raw = self.0;
        let mut seen = Seen::default();
        let mut out = Vec::with_capacity(16);
        while let Some(key) = map.next_key_seed(Key)? {
            let value: &'de RawValue = map.next_value()?;
            let text_of_value = value.get();
            let mut de = serde_json::Deserializer::from_str(text_of_value);
            let kind = KindSeed(raw).deserialize(&mut de).map_err(A::Error::custom)?;
            out.push(Member {
                key: text(raw, key.clone()),
                value: offset(raw, text_of_value),
                kind,
                parsed: OnceLock::new(),
            });
            seen.add(key)?;
        }
        Ok(out)
    }
}

fn numeric_date(claims: &Claims, name: &str) -> Result<Option<i64>, AuthError> {
    let Some(m) = claims.member(name) else {
        return Ok(None);
    };
    let invalid = || AuthError::ClaimInvalid(name.into());
    let Kind::Number(n) = m.kind else {
        return Err(invalid());
    };
    let t = match n {
        Num::I(i) => i,
        Num::U(u) if u <= i64::MAX as u64 => u as i64,
        Num::U(u) => u as f64 as i64,
        Num::F(f) => {
            if !f.is_finite() || !(0.0..=MAX_NUMERIC_DATE as f64).contains(&f) {
                return Err(invalid());
            }
            f.floor() as i64
        }
    };
    if !(0..=MAX_NUMERIC_DATE).contains(&t) {
        return Err(invalid());
    }
    Ok(Some(t))
}

/// The roles of a role claim, in claim order, without allocating: see [`Claims::roles`].
#[derive(Debug, Clone)]
pub struct Roles<'a> {
    one: Option<&'a str>,
    many: std::slice::Iter<'a, Value>,
}

impl<'a> Iterator for Roles<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.one.take().or_else(|| self.many.by_ref().find_map(Value::as_str))
    }
}

impl UncheckedClaims {
    /// Reads a claims object strictly; its claims are checked by [`Self::check`].
    pub fn parse(json: Vec<u8>) -> Result<Self, JsonError> {
        let raw = String::from_utf8(json).map_err(|e| JsonError::Invalid(e.to_string()))?.into_boxed_str();
        let mut de = serde_json::Deserializer::from_str(&raw);
        let members = match Members(&raw).deserialize(&mut de) {
            Ok(m) => m,
            Err(e) if e.is_data() && raw.trim_start().as_bytes().first() != Some(&b'{') => {
                return Err(JsonError::NotAnObject)
            }
            Err(e) => return Err(JsonError::Invalid(e.to_string())),
        };
        de.end().map_err(|e| JsonError::Invalid(e.to_string()))?;
        Ok(Self(Claims { raw, members, exp: None, nbf: None, iat: None }))
    }

    /// Refuses out-of-range or non-numeric time claims and non-string `iss`, `sub`,
    /// `jti` or `aud` (a string or an array of strings).
    pub fn check(self) -> Result<Claims, AuthError> {
        let mut c = self.0;
        for name in ["iss", "sub", "jti"] {
            if c.member(name).is_some_and(|m| !matches!(m.kind, Kind::Str(_))) {
                return Err(AuthError::ClaimInvalid(name.into()));
            }
        }
        if c.member("aud").is_some_and(|m| !matches!(m.kind, Kind::Str(_) | Kind::Array(true))) {
            return Err(AuthError::ClaimInvalid("aud".into()));
        }
        c.exp = numeric_date(&c, "exp")?;
        c.nbf = numeric_date(&c, "nbf")?;
        c.iat = numeric_date(&c, "iat")?;
        Ok(c)
    }
}

impl Claims {
    /// Wraps a claims object, refusing out-of-range or non-numeric time claims and
    /// non-string `iss`, `sub`, `jti`.
    pub fn new(map: Map<String, Value>) -> Result<Self, AuthError> {
        let json = serde_json::to_vec(&map).map_err(|_| AuthError::TokenMalformed("claims json"))?;
        UncheckedClaims::parse(json).map_err(|_| AuthError::TokenMalformed("claims json"))?.check()
    }

    fn resolve<'a>(&'a self, t: &'a Text) -> &'a str {
        match t {
            Text::Span(r) => &self.raw[r.clone()],
            Text::Owned(s) => s,
        }
    }

    fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| self.resolve(&m.key) == name)
    }

    fn value<'a>(&'a self, m: &'a Member) -> &'a Value {
        m.parsed.get_or_init(|| {
            // Checked strictly when the claims were read, so this parse cannot fail.
            serde_json::from_str(&self.raw[m.value.clone()]).unwrap_or(Value::Null)
        })
    }

    /// Every claim, as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        self.members.iter().map(|m| (self.resolve(&m.key).to_owned(), self.value(m).clone())).collect()
    }

    /// Any claim by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.member(name).map(|m| self.value(m))
    }

    /// The roles named by the role claim `name`: a string is one role, an array its
    /// string elements (others are skipped); `None` when the claim is absent or neither.
    /// The one reading of the role claim (policy and the audit record both use it).
    pub fn roles(&self, name: &str) -> Option<Roles<'_>> {
        match self.get(name)? {
            Value::String(s) => Some(Roles { one: Some(s.as_str()), many: [].iter() }),
            Value::Array(a) => Some(Roles { one: None, many: a.iter() }),
            _ => None,
        }
    }

    /// A string claim by name.
    pub fn str(&self, name: &str) -> Option<&str> {
        match &self.member(name)?.kind {
            Kind::Str(t) => Some(self.resolve(t)),
            _ => None,
        }
    }

    /// `exp`, when present.
    pub fn exp(&self) -> Option<i64> {
        self.exp
    }

    /// `iat`, when present.
    pub fn iat(&self) -> Option<i64> {
        self.iat
    }

    /// `nbf`, when present.
    pub fn nbf(&self) -> Option<i64> {
        self.nbf
    }

    /// Checks `exp` (required), `nbf` and `iat` against `now` with `leeway` seconds.
    pub fn check_time(&self, now: i64, leeway: i64) -> Result<(), AuthError> {
        let exp = self.exp.ok_or_else(|| AuthError::ClaimMissing("exp".into()))?;
        if now > exp.saturating_add(leeway) {
            return Err(AuthError::TokenExpired);
        }
        if self.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(AuthError::TokenNotYetValid);
        }
        if self.iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(AuthError::TokenNotYetValid);
        }
        Ok(())
    }

    /// Checks `iss` equals `issuer` exactly.
    pub fn check_issuer(&self, issuer: &str) -> Result<(), AuthError> {
        match self.str("iss") {
            Some(iss) if iss == issuer => Ok(()),
            _ => Err(AuthError::IssuerInvalid),
        }
    }

    /// Checks `aud` (string or array) names at least one of `audiences`; an empty
    /// `audiences` list disables the check.
    pub fn check_audience(&self, audiences: &[String]) -> Result<(), AuthError> {
        if audiences.is_empty() {
            return Ok(());
        }
        let hit = match self.member("aud") {
            Some(Member { kind: Kind::Str(a), .. }) => {
                let a = self.resolve(a);
                audiences.iter().any(|x| x == a)
            }
            Some(m @ Member { kind: Kind::Array(_), .. }) => match self.value(m) {
                Value::Array(list) => list.iter().filter_map(Value::as_str).any(|a| audiences.iter().any(|x| x == a)),
                _ => false,
            },
            _ => false,
        };
        if hit {
            Ok(())
        } else {
            Err(AuthError::AudienceInvalid)
        }
    }

    /// Checks every named claim is present and not null.
    pub fn check_required(&self, required: &[String]) -> Result<(), AuthError> {
        for name in required {
            if self.member(name).is_none_or(|m| matches!(m.kind, Kind::Null)) {
                return Err(AuthError::ClaimMissing(name.clone()));
            }
        }
        Ok(())
    }

    /// Checks `exp - iat` is at most `max` seconds (`iat` is then required).
    pub fn check_lifetime(&self, max: i64) -> Result<(), AuthError> {
        let iat = self.iat.ok_or_else(|| AuthError::ClaimMissing("iat".into()))?;
        let exp = self.exp.ok_or_else(|| AuthError::ClaimMissing("exp".into()))?;
        if exp - iat > max {
            Err(AuthError::LifetimeExceeded)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Result<Claims, AuthError> {
        Claims::new(v.as_object().unwrap().clone())
    }

    #[test]
    fn time_claims_range_checked_before_use() {
        for bad in [json!(1e19), json!(-1), json!("1700000000"), json!(u64::MAX), json!(1e300), json!(true)] {
            assert!(claims(json!({"exp": bad})).is_err(), "{bad}");
        }
        assert_eq!(claims(json!({"exp": 1700000000.7})).unwrap().exp(), Some(1700000000));
    }

    #[test]
    fn time_rules() {
        let now = 1_700_000_000;
        let c = |v| claims(v).unwrap();
        assert_eq!(c(json!({})).check_time(now, 30), Err(AuthError::ClaimMissing("exp".into())));
        assert_eq!(c(json!({"exp": now - 31})).check_time(now, 30), Err(AuthError::TokenExpired));
        assert!(c(json!({"exp": now - 30})).check_time(now, 30).is_ok());
        assert_eq!(c(json!({"exp": now + 60, "nbf": now + 31})).check_time(now, 30), Err(AuthError::TokenNotYetValid));
        assert!(c(json!({"exp": now + 60, "nbf": now + 30})).check_time(now, 30).is_ok());
        assert_eq!(c(json!({"exp": now + 60, "iat": now + 100})).check_time(now, 30), Err(AuthError::TokenNotYetValid));
        assert_eq!(c(json!({"exp": now + 601, "iat": now})).check_lifetime(600), Err(AuthError::LifetimeExceeded));
        assert!(c(json!({"exp": now + 600, "iat": now})).check_lifetime(600).is_ok());
        assert_eq!(c(json!({"exp": now})).check_lifetime(600), Err(AuthError::ClaimMissing("iat".into())));
    }

    #[test]
    fn issuer_audience_required() {
        let c = claims(json!({"iss":"https://a","aud":["x","api"],"sub":"s","role":null})).unwrap();
        assert!(c.check_issuer("https://a").is_ok());
        assert_eq!(c.check_issuer("https://a/"), Err(AuthError::IssuerInvalid));
        assert!(c.check_audience(&["api".into()]).is_ok());
        assert_eq!(c.check_audience(&["other".into()]), Err(AuthError::AudienceInvalid));
        let no_aud = claims(json!({})).unwrap();
        assert_eq!(no_aud.check_audience(&["api".into()]), Err(AuthError::AudienceInvalid));
        assert_eq!(no_aud.check_issuer("https://a"), Err(AuthError::IssuerInvalid));
        assert!(c.check_required(&["sub".into()]).is_ok());
        assert_eq!(c.check_required(&["role".into()]), Err(AuthError::ClaimMissing("role".into())));
        assert!(claims(json!({"aud": 5})).is_err());
        assert!(claims(json!({"sub": 5})).is_err());
    }
}
