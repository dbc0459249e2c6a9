//! Bearer-key authentication: the presented key is hashed and compared, in constant time,
//! with every configured hash, so neither the match nor its position leaks through timing.

use subtle::ConstantTimeEq;

use super::errors::{ApiError, redact_key};
use crate::api_keys::{KeysFile, Role, key_digest};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The key id, recorded in receipts.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Requests per minute (`None`: unlimited, only without authentication).
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute (`None`: unlimited).
    pub tokens_per_minute: Option<u64>,
}

/// Tenant id recorded when the server runs with `--insecure-no-auth`.
pub const INSECURE_TENANT: &str = "insecure-no-auth";

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Keys from an API-keys file.
    Keys(Vec<([u8; 32], Tenant)>),
    /// No authentication (`--insecure-no-auth`): every caller is an unlimited admin.
    Disabled,
}

impl Auth {
    /// Builds the key table from a loaded file.
    pub fn from_file(file: &KeysFile) -> Auth {
        let entries = file
            .key
            .iter()
            .filter_map(|entry| {
                let digest: [u8; 32] = hex::decode(&entry.sha256).ok()?.try_into().ok()?;
                let tenant = Tenant {
                    id: entry.id.clone(),
                    role: entry.role,
                    requests_per_minute: Some(entry.requests_per_minute),
                    tokens_per_minute: Some(entry.tokens_per_minute),
                };
                Some((digest, tenant))
            })
            .collect();
        Auth::Keys(entries)
    }

    /// Checks an `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Tenant, ApiError> {
        let Auth::Keys(entries) = self else {
            return Ok(Tenant {
                id: INSECURE_TENANT.to_string(),
                role: Role::Admin,
                requests_per_minute: None,
                tokens_per_minute: None,
            });
        };
        let header = authorization.ok_or(ApiError::MissingApiKey)?;
        let text = std::str::from_utf8(header).map_err(|_| ApiError::InvalidApiKey {
            redacted: "(not UTF-8)".to_string(),
        })?;
        let key = bearer_token(text).ok_or(ApiError::MissingApiKey)?;
        let presented = key_digest(key);
        // Compare against every entry (`or` evaluates its argument): no early exit.
        let found = entries.iter().fold(None, |found, (digest, tenant)| {
            found.or(bool::from(digest.ct_eq(&presented)).then_some(tenant))
        });
        found.cloned().ok_or_else(|| ApiError::InvalidApiKey {
            redacted: redact_key(key),
        })
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive), or `None`.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Admin-only routes call this.
pub fn require_admin(tenant: &Tenant) -> Result<(), ApiError> {
    match tenant.role {
        Role::Admin => Ok(()),
        Role::User => Err(ApiError::PermissionDenied {
            key_id: tenant.id.clone(),
            required: Role::Admin.as_str(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_keys::KeyEntry;

    fn auth() -> Auth {
        let entry = |id: &str, key, role| KeyEntry {
            id: id.into(),
            sha256: hex::encode(key_digest(key)),
            role,
            requests_per_minute: 5,
            tokens_per_minute: 50,
        };
        Auth::from_file(&KeysFile {
            key: vec![
                entry("team-a", "sk-sworn-a", Role::User),
                entry("ops", "sk-sworn-b", Role::Admin),
            ],
        })
    }

    #[test]
    fn keys_resolve_to_their_tenant() {
        let a = auth();
        assert_eq!(
            a.authenticate(Some(b"Bearer sk-sworn-a")).unwrap().id,
            "team-a"
        );
        assert_eq!(
            a.authenticate(Some(b"bearer  sk-sworn-b ")).unwrap().role,
            Role::Admin
        );
    }

    #[test]
    fn missing_wrong_and_malformed_keys_are_401() {
        let a = auth();
        for header in [
            None,
            Some(&b"sk-sworn-a"[..]),
            Some(b"Basic abc"),
            Some(b"Bearer "),
        ] {
            let err = a.authenticate(header).unwrap_err();
            assert_eq!(err.status().as_u16(), 401, "{header:?}");
        }
        let err = a.authenticate(Some(b"Bearer sk-sworn-zzzzzz")).unwrap_err();
        assert_eq!(err.code(), Some("invalid_api_key"));
        assert!(!err.to_string().contains("sk-sworn-zzzzzz"));
        assert!(a.authenticate(Some(b"Bearer \xff\xfe")).is_err());
    }

    #[test]
    fn admin_routes_refuse_user_keys() {
        let a = auth();
        let user = a.authenticate(Some(b"Bearer sk-sworn-a")).unwrap();
        assert_eq!(require_admin(&user).unwrap_err().status().as_u16(), 403);
        let admin = a.authenticate(Some(b"Bearer sk-sworn-b")).unwrap();
        assert!(require_admin(&admin).is_ok());
        assert!(require_admin(&Auth::Disabled.authenticate(None).unwrap()).is_ok());
    }
}
