//! Route policy: which roles may call a route with which methods, and owner rules
//! ("a patient reads only their own records"). [`authorize`] is the only way to get
//! a [`Permit`], so forwarding code cannot skip it.

use crate::error::{Denial, PolicyError};
use crate::route::RouteMatch;
use crate::verify::VerifiedToken;
use serde_json::Value;
use std::sync::Arc;

/// Owner rule: the claim's value must equal the path parameter's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRule {
    /// Claim name, e.g. `sub`.
    pub claim: String,
    /// Route parameter name, e.g. `patient_id`.
    pub param: String,
}

/// One allow rule of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    /// Role granted.
    pub role: String,
    /// Methods for this role; empty means every method of the route.
    pub methods: Vec<String>,
    /// Optional owner rule.
    pub owner: Option<OwnerRule>,
}

/// Evidence that a request passed authentication (unless public) and policy.
#[derive(Debug, Clone)]
pub struct Permit {
    route: RouteMatch,
    token: Option<Arc<VerifiedToken>>,
}

impl Permit {
    /// The matched route.
    pub fn route(&self) -> &RouteMatch {
        &self.route
    }

    /// The verified token, `None` on a public route.
    pub fn token(&self) -> Option<&Arc<VerifiedToken>> {
        self.token.as_ref()
    }
}

/// The caller's roles from the role claim (string, or array of strings).
pub fn roles<'a>(token: &'a VerifiedToken, role_claim: &str) -> Vec<&'a str> {
    match token.claims().get(role_claim) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A permit for a public route: no token involved.
pub fn permit_public(route: RouteMatch) -> Permit {
    Permit { route, token: None }
}

/// Applies the route's lifetime cap and allow rules to a verified token.
pub fn authorize(
    route: RouteMatch,
    token: Arc<VerifiedToken>,
    method: &str,
    role_claim: &str,
) -> Result<Permit, Denial> {
    let r = &route.route;
    if let Some(max) = r.max_token_lifetime {
        token.claims().check_lifetime(max).map_err(Denial::Auth)?;
    }
    if r.allow.is_empty() {
        return Ok(Permit { route, token: Some(token) });
    }
    let caller_roles = roles(&token, role_claim);
    let mut best = PolicyError::Role;
    for rule in r.allow.iter().filter(|rule| caller_roles.contains(&rule.role.as_str())) {
        if !rule.methods.is_empty() && !rule.methods.iter().any(|m| m == method) {
            best = best.max_progress(PolicyError::Method);
            continue;
        }
        if let Some(owner) = &rule.owner {
            let claim = token.claims().str(&owner.claim);
            if claim.is_none() || claim != route.param(&owner.param) {
                best = best.max_progress(PolicyError::Owner);
                continue;
            }
        }
        return Ok(Permit { route, token: Some(token) });
    }
    Err(Denial::Policy(best))
}

impl PolicyError {
    /// The refusal that got furthest through the rules: owner over method over role.
    fn max_progress(self, other: PolicyError) -> PolicyError {
        let rank = |e: PolicyError| match e {
            PolicyError::Role => 0,
            PolicyError::Method => 1,
            PolicyError::Owner => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}
