//! The pure rules of signing in with an OpenID Connect provider: the random values a sign-in
//! carries (state, nonce, PKCE verifier and its S256 challenge), where the browser may be sent
//! back to, the authorization request, the checks an ID token's claims must pass beyond its
//! signature, and the redirects that tell the storefront how a sign-in ended.
//!
//! The signature, `iss`, `aud` and `exp` are verified by `jsonwebtoken` against the provider's
//! keys (see `crate::provider`); what is checked here is what only the relying party knows:
//! the nonce it sent and the e-mail's verification.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;
use web::FieldError;

/// Where the storefront finishes a sign-in (a page of the web app, same origin as the API).
pub const COMPLETE_PATH: &str = "/signin/complete";
/// The longest `return_to` accepted; a path in the shop is far shorter.
pub const RETURN_TO_MAX_CHARS: usize = 2048;

/// 256 random bits, URL-safe: states, nonces, PKCE verifiers (43 characters, within RFC 7636's
/// 43..=128) and tickets.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE `code_challenge` for `verifier` with method S256 (RFC 7636 4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `return_to` must be a path of this site: one leading `/`, not `//` or `/\` (which browsers
/// read as another host), no scheme, no control characters. Anything else could send a
/// signed-in person to a page of someone else's choosing.
pub fn return_to(value: &str) -> Result<String, FieldError> {
    let refuse = |message: &str| Err(FieldError::new("return_to", message));
    if value.chars().count() > RETURN_TO_MAX_CHARS {
        return refuse("must be at most 2048 characters");
    }
    if !value.starts_with('/') || value.starts_with("//") || value.starts_with("/\\") {
        return refuse("must be a path on this site starting with a single '/'");
    }
    if value.chars().any(|c| c.is_control() || c == '\\') {
        return refuse("must not contain control characters or backslashes");
    }
    Ok(value.to_owned())
}

/// What an authorization request says besides the provider's endpoint.
#[derive(Debug)]
pub struct AuthorizationRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub pkce_verifier: &'a str,
}

/// The URL the browser is sent to: the authorization code flow with PKCE (S256), asking for
/// the `openid email profile` scopes.
pub fn authorization_url(endpoint: &Url, request: &AuthorizationRequest<'_>) -> Url {
    let mut url = endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", request.client_id)
        .append_pair("redirect_uri", request.redirect_uri)
        .append_pair("scope", "openid email profile")
        .append_pair("state", request.state)
        .append_pair("nonce", request.nonce)
        .append_pair("code_challenge", &pkce_challenge(request.pkce_verifier))
        .append_pair("code_challenge_method", "S256");
    url
}

/// The claims of an ID token this service reads (its signature, `iss`, `aud` and `exp` are
/// already verified when these are looked at).
#[derive(Debug, Clone, Deserialize)]
pub struct IdTokenClaims {
    pub sub: String,
    /// A string or an array of strings.
    pub aud: serde_json::Value,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// A boolean; some providers send the string `"true"`.
    #[serde(default)]
    pub email_verified: Option<serde_json::Value>,
    #[serde(default)]
    pub name: Option<String>,
}

/// The person an accepted ID token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub subject: String,
    pub email: String,
    pub name: Option<String>,
}

/// Why a sign-in was refused; each maps to the `error` code the storefront receives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the callback lacks {0}")]
    InvalidRequest(&'static str),
    #[error("the sign-in is unknown, expired or already used")]
    InvalidState,
    #[error("the provider refused the sign-in: {0}")]
    ProviderError(String),
    #[error("the provider cannot be reached: {0}")]
    ProviderUnavailable(String),
    #[error("the ID token is not valid: {0}")]
    InvalidIdToken(String),
    #[error("the provider has not verified this e-mail address")]
    EmailNotVerified,
}

impl Refusal {
    /// The stable code in `/signin/complete?error=<code>`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::InvalidRequest(_) => "invalid_request",
            Refusal::InvalidState => "invalid_state",
            Refusal::ProviderError(_) => "provider_error",
            Refusal::ProviderUnavailable(_) => "provider_unavailable",
            Refusal::InvalidIdToken(_) => "invalid_id_token",
            Refusal::EmailNotVerified => "email_not_verified",
        }
    }
}

/// The checks beyond the signature: the nonce this sign-in sent came back (so the token was
/// minted for this browser's sign-in, not replayed from another), an `azp` that names us when
/// the token has several audiences (OIDC Core 3.1.3.7), and a verified e-mail (accounts are
/// matched by e-mail, so an unverified one could take over someone else's account).
pub fn accept_claims(
    claims: IdTokenClaims,
    expected_nonce: &str,
    client_id: &str,
) -> Result<VerifiedIdentity, Refusal> {
    if claims.nonce.as_deref() != Some(expected_nonce) {
        return Err(Refusal::InvalidIdToken(
            "its nonce is not the one this sign-in sent".into(),
        ));
    }
    if claims.aud.as_array().is_some_and(|aud| aud.len() > 1)
        && claims.azp.as_deref() != Some(client_id)
    {
        return Err(Refusal::InvalidIdToken(
            "it has several audiences and its azp is not this client".into(),
        ));
    }
    if claims.sub.trim().is_empty() {
        return Err(Refusal::InvalidIdToken("it has no subject".into()));
    }
    let verified = match &claims.email_verified {
        Some(serde_json::Value::Bool(verified)) => *verified,
        Some(serde_json::Value::String(text)) => text == "true",
        _ => false,
    };
    let Some(email) = claims.email.filter(|email| !email.trim().is_empty()) else {
        return Err(Refusal::InvalidIdToken(
            "it carries no e-mail address".into(),
        ));
    };
    if !verified {
        return Err(Refusal::EmailNotVerified);
    }
    Ok(VerifiedIdentity {
        subject: claims.sub,
        email: email.trim().to_owned(),
        name: claims.name.filter(|name| !name.trim().is_empty()),
    })
}

/// `/signin/complete?ticket=..&return_to=..` (a relative URL: the browser stays on the origin
/// it called, the gateway).
pub fn completed(ticket: &str, return_to: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("ticket", ticket)
        .append_pair("return_to", return_to)
        .finish();
    format!("{COMPLETE_PATH}?{query}")
}

/// `/signin/complete?error=<code>&detail=<text>`.
pub fn refused(refusal: &Refusal) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("error", refusal.code())
        .append_pair("detail", &refusal.to_string())
        .finish();
    format!("{COMPLETE_PATH}?{query}")
}

/// A display name for an account created from a sign-in: the token's `name`, else the e-mail's
/// local part, cut to what a name may hold.
pub fn account_name(identity: &VerifiedIdentity) -> String {
    let name = identity
        .name
        .clone()
        .unwrap_or_else(|| identity.email.split('@').next().unwrap_or("").to_owned());
    let name: String = name.chars().filter(|c| !c.is_control()).take(100).collect();
    if name.trim().is_empty() {
        "Customer".into()
    } else {
        name.trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: serde_json::Value) -> anyhow::Result<IdTokenClaims> {
        Ok(serde_json::from_value(value)?)
    }

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_are_43_url_safe_characters_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn return_to_accepts_only_paths_of_this_site() {
        for ok in ["/", "/orders/42?tab=items#top", "/搜索?q=耳机"] {
            assert_eq!(return_to(ok).ok().as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "orders",
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "/a\nb",
            "/a\\b",
        ] {
            let error = return_to(bad).err();
            assert_eq!(
                error.map(|e| e.field),
                Some("return_to".to_owned()),
                "{bad:?}"
            );
        }
        assert!(return_to(&format!("/{}", "a".repeat(RETURN_TO_MAX_CHARS))).is_err());
    }

    #[test]
    fn the_authorization_url_carries_the_flow_parameters() -> anyhow::Result<()> {
        let endpoint = Url::parse("https://accounts.example/o/auth?hl=en")?;
        let url = authorization_url(
            &endpoint,
            &AuthorizationRequest {
                client_id: "shop",
                redirect_uri: "http://127.0.0.1:8080/api/users/oidc/google/callback",
                state: "s",
                nonce: "n",
                pkce_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            },
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("hl"), Some("en"));
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("scope"), Some("openid email profile"));
        assert_eq!(get("state"), Some("s"));
        assert_eq!(get("nonce"), Some("n"));
        assert_eq!(
            get("code_challenge"),
            Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        );
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(
            get("redirect_uri"),
            Some("http://127.0.0.1:8080/api/users/oidc/google/callback")
        );
        Ok(())
    }

    #[test]
    fn claims_need_our_nonce_and_a_verified_email() -> anyhow::Result<()> {
        let good = json!({"sub": "1", "aud": "shop", "nonce": "n", "email": "ada@example.com",
                          "email_verified": true, "name": "Ada"});
        let identity = accept_claims(claims(good.clone())?, "n", "shop")?;
        assert_eq!(identity.subject, "1");
        assert_eq!(identity.email, "ada@example.com");

        let mut other_nonce = good.clone();
        other_nonce["nonce"] = json!("m");
        assert_eq!(
            accept_claims(claims(other_nonce)?, "n", "shop").map_err(|e| e.code()),
            Err("invalid_id_token")
        );
        let mut no_nonce = good.clone();
        no_nonce["nonce"] = serde_json::Value::Null;
        assert!(accept_claims(claims(no_nonce)?, "n", "shop").is_err());

        for unverified in [json!(false), json!("false"), serde_json::Value::Null] {
            let mut token = good.clone();
            token["email_verified"] = unverified;
            assert_eq!(
                accept_claims(claims(token)?, "n", "shop"),
                Err(Refusal::EmailNotVerified)
            );
        }
        let mut as_string = good.clone();
        as_string["email_verified"] = json!("true");
        assert!(accept_claims(claims(as_string)?, "n", "shop").is_ok());

        let mut several = good.clone();
        several["aud"] = json!(["shop", "other"]);
        assert!(accept_claims(claims(several.clone())?, "n", "shop").is_err());
        several["azp"] = json!("shop");
        assert!(accept_claims(claims(several)?, "n", "shop").is_ok());

        let mut no_email = good;
        no_email["email"] = serde_json::Value::Null;
        assert_eq!(
            accept_claims(claims(no_email)?, "n", "shop").map_err(|e| e.code()),
            Err("invalid_id_token")
        );
        Ok(())
    }

    #[test]
    fn completion_urls_are_relative_and_encoded() {
        assert_eq!(
            completed("t-1", "/orders?id=7&x=y"),
            "/signin/complete?ticket=t-1&return_to=%2Forders%3Fid%3D7%26x%3Dy"
        );
        let url = refused(&Refusal::InvalidState);
        assert!(url.starts_with("/signin/complete?error=invalid_state&detail="));
        assert!(url.contains("already+used"));
    }

    #[test]
    fn account_names_come_from_the_token_or_the_address() {
        let mut identity = VerifiedIdentity {
            subject: "1".into(),
            email: "grace.hopper@example.com".into(),
            name: None,
        };
        assert_eq!(account_name(&identity), "grace.hopper");
        identity.name = Some("Grace Hopper".into());
        assert_eq!(account_name(&identity), "Grace Hopper");
    }
}
