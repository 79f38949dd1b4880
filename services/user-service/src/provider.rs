//! An OpenID Connect provider as this relying party talks to it: discovery (cached), the
//! authorization code exchange with the PKCE verifier, and ID-token verification against the
//! provider's JWKS (cached, refetched when a token names a key not seen yet).
//!
//! Built on `jsonwebtoken` (which the platform already uses for its own tokens) and hyper with
//! rustls, rather than the `openidconnect` crate: its current release is written against
//! reqwest 0.12 (we are on 0.13, so a second HTTP stack would come along), and what it would
//! add is the typestate plumbing of the flow, while the parts that must be right (signature,
//! `iss`, `aud`, `exp`) are `jsonwebtoken`'s either way. The relying party's own checks
//! (nonce, `email_verified`) are pure functions in `crate::domain::oidc`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use crate::config::OidcProviderConfig;
use crate::domain::oidc::{IdTokenClaims, Refusal, VerifiedIdentity, accept_claims};

/// How long a discovery document and a key set are used before being fetched again.
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// The least time between two key fetches caused by unknown key ids, so tokens with made-up
/// `kid`s cannot make us hammer the provider.
const MIN_KEY_REFRESH: Duration = Duration::from_secs(10);
/// How long one request to the provider may take, connection included: a provider that hangs
/// answers the sign-in with "unavailable", not a hung page.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery and key sets are small; anything larger is not what we asked for.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;
/// Signature algorithms accepted in ID tokens (Google signs with RS256).
const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// The parts of `/.well-known/openid-configuration` this relying party uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub jwks_uri: Url,
}

/// A value fetched from the provider and when; shared by the clones of a provider.
type Cached<T> = Arc<Mutex<Option<(Arc<T>, Instant)>>>;

/// One configured provider. Cheap to clone; clones share the caches.
#[derive(Clone)]
pub struct IdentityProvider {
    pub config: OidcProviderConfig,
    client: ProviderHttp,
    discovery: Cached<Discovery>,
    keys: Cached<JwkSet>,
}

impl std::fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProvider")
            .field("name", &self.config.name)
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl IdentityProvider {
    pub fn new(config: OidcProviderConfig, client: ProviderHttp) -> Self {
        Self {
            config,
            client,
            discovery: Arc::new(Mutex::new(None)),
            keys: Arc::new(Mutex::new(None)),
        }
    }

    /// The provider's discovery document, from the cache while fresh. Its `issuer` must be the
    /// configured one (OIDC Discovery 4.3), or every token's `iss` check would be against a
    /// value nobody chose.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, Refusal> {
        let mut cached = self.discovery.lock().await;
        if let Some((discovery, at)) = cached.as_ref()
            && at.elapsed() < CACHE_TTL
        {
            return Ok(discovery.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
        let discovery: Discovery = self.get_json(&url).await?;
        if discovery.issuer.trim_end_matches('/') != self.config.issuer {
            return Err(Refusal::ProviderUnavailable(format!(
                "its discovery names the issuer {:?}, not the configured {:?}",
                discovery.issuer, self.config.issuer
            )));
        }
        let discovery = Arc::new(discovery);
        *cached = Some((discovery.clone(), Instant::now()));
        Ok(discovery)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, Refusal> {
        let (status, body) = self.client.send(Method::GET, url, None).await?;
        if !status.is_success() {
            return Err(Refusal::ProviderUnavailable(format!(
                "{url} answered {status}"
            )));
        }
        serde_json::from_slice(&body).map_err(|error| {
            Refusal::ProviderUnavailable(format!("{url} answered no usable JSON: {error}"))
        })
    }

    /// Trades the authorization code for tokens (client_secret_post, with the PKCE verifier)
    /// and verifies the ID token among them.
    pub async fn redeem_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<VerifiedIdentity, Refusal> {
        let discovery = self.discovery().await?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.config.redirect_uri)
            .append_pair("client_id", &self.config.client_id)
            .append_pair("client_secret", self.config.client_secret.expose_secret())
            .append_pair("code_verifier", pkce_verifier)
            .finish();
        let (status, bytes) = self
            .client
            .send(Method::POST, discovery.token_endpoint.as_str(), Some(body))
            .await?;
        if status.is_server_error() {
            return Err(Refusal::ProviderUnavailable(format!(
                "its token endpoint answered {status}"
            )));
        }
        if !status.is_success() {
            // RFC 6749 5.2: a refused code (unknown, used, or not matching the verifier).
            let detail = match serde_json::from_slice::<TokenError>(&bytes) {
                Ok(error) => match error.error_description {
                    Some(description) => format!("{}: {description}", error.error),
                    None => error.error,
                },
                Err(_) => format!("its token endpoint answered {status}"),
            };
            return Err(Refusal::ProviderError(detail));
        }
        let tokens: TokenResponse = serde_json::from_slice(&bytes).map_err(|error| {
            Refusal::ProviderError(format!("its token response is not valid JSON: {error}"))
        })?;
        let id_token = tokens
            .id_token
            .ok_or_else(|| Refusal::ProviderError("its token response has no id_token".into()))?;
        self.verify_id_token(&discovery, &id_token, nonce).await
    }

    /// Signature (by a key of the provider's JWKS, RS256 or ES256 only), `iss`, `aud` (our
    /// client id), `exp`, then the nonce and the e-mail's verification.
    pub async fn verify_id_token(
        &self,
        discovery: &Discovery,
        id_token: &str,
        nonce: &str,
    ) -> Result<VerifiedIdentity, Refusal> {
        let invalid =
            |error: jsonwebtoken::errors::Error| Refusal::InvalidIdToken(error.to_string());
        let header = jsonwebtoken::decode_header(id_token).map_err(invalid)?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(Refusal::InvalidIdToken(format!(
                "its algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = self.key(discovery, header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&accepted_issuers(&self.config.issuer));
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        let claims = jsonwebtoken::decode::<IdTokenClaims>(id_token, &key, &validation)
            .map_err(invalid)?
            .claims;
        accept_claims(claims, nonce, &self.config.client_id)
    }

    /// The key named `kid` (or the only key, when the token names none and there is one).
    async fn key(&self, discovery: &Discovery, kid: Option<&str>) -> Result<DecodingKey, Refusal> {
        let mut cached = self.keys.lock().await;
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        if let Some((set, at)) = cached.as_ref()
            && let Some(jwk) = find(set)
            && at.elapsed() < CACHE_TTL
        {
            return DecodingKey::from_jwk(&jwk)
                .map_err(|error| Refusal::InvalidIdToken(error.to_string()));
        }
        let recently = cached
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < MIN_KEY_REFRESH);
        if !recently {
            let set: JwkSet = self.get_json(discovery.jwks_uri.as_str()).await?;
            *cached = Some((Arc::new(set), Instant::now()));
        }
        let jwk = cached
            .as_ref()
            .and_then(|(set, _)| find(set))
            .ok_or_else(|| {
                Refusal::InvalidIdToken(format!(
                    "it is signed with a key the provider does not publish ({kid:?})"
                ))
            })?;
        DecodingKey::from_jwk(&jwk).map_err(|error| Refusal::InvalidIdToken(error.to_string()))
    }
}

/// The `iss` values accepted for an issuer. Google's ID tokens carry either
/// `https://accounts.google.com` or `accounts.google.com` (its documentation says to accept
/// both); any other issuer must match exactly.
pub fn accepted_issuers(issuer: &str) -> Vec<&str> {
    match issuer {
        "https://accounts.google.com" => vec![issuer, "accounts.google.com"],
        _ => vec![issuer],
    }
}

/// The HTTP client for providers: hyper over rustls (ring, Mozilla's roots), HTTP/1.1, no
/// redirects followed, a deadline per request. Cheap to clone.
#[derive(Clone)]
pub struct ProviderHttp {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ProviderHttp {
    pub fn new() -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// One request; any failure to get a whole answer in time means the provider is
    /// unavailable. A body is sent as a form.
    async fn send(
        &self,
        method: Method,
        url: &str,
        form: Option<String>,
    ) -> Result<(StatusCode, Bytes), Refusal> {
        let unavailable = |what: String| Refusal::ProviderUnavailable(format!("{url}: {what}"));
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header(header::ACCEPT, "application/json");
        if form.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = request
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .map_err(|error| unavailable(error.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| unavailable(error.to_string()))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|error| unavailable(error.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| unavailable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::accepted_issuers;

    #[test]
    fn google_has_two_issuer_spellings_others_one() {
        assert_eq!(
            accepted_issuers("https://accounts.google.com"),
            ["https://accounts.google.com", "accounts.google.com"]
        );
        assert_eq!(
            accepted_issuers("http://127.0.0.1:8092/google"),
            ["http://127.0.0.1:8092/google"]
        );
    }
}
