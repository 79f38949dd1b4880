//! `/api/users/oidc/*`: "Sign in with Google" (any configured OpenID Connect provider).
//!
//! The browser goes to `authorize`, which records the sign-in (state, nonce, PKCE verifier,
//! where to return) and sends it to the provider; the provider sends it back to `callback`,
//! which takes the recorded sign-in by its state (once), redeems the code, verifies the ID
//! token, finds, links or creates the account and hands the browser a one-time ticket in a
//! redirect to the storefront's `/signin/complete`; the storefront trades the ticket at
//! `tickets` for the same tokens a password login returns. Tokens never travel in a URL.
//! A refusal at any step redirects to `/signin/complete?error=<code>&detail=<text>` and
//! changes nothing.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use contracts::user::{SignInMethod, UserLoggedIn};
use serde::Deserialize;
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use web::{Json, Path, Problem};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::users::{TokenResponse, create_user, emit, issue_tokens};
use crate::domain::oidc::{self, AuthorizationRequest, Refusal, VerifiedIdentity};
use crate::domain::tokens;
use crate::provider::IdentityProvider;
use crate::store::oidc::PendingSignin;
use crate::store::{self, users::NewUser};

/// How long a person may take at the provider's login page.
const SIGNIN_TTL_SECS: i64 = 600;
/// How long the storefront has to redeem a ticket.
const TICKET_TTL_SECS: i64 = 60;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query for OpenAPI; the handler parses the raw query
pub struct AuthorizeParams {
    /// A path on this site to return to after signing in, starting with a single `/`
    /// (default `/`).
    #[param(example = "/orders")]
    return_to: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query for OpenAPI; the handler parses the raw query
pub struct CallbackParams {
    /// The authorization code (on success).
    code: Option<String>,
    /// The state `authorize` sent.
    state: Option<String>,
    /// The provider's error code (when it refused or the person cancelled).
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    /// The ticket from `/signin/complete?ticket=...`.
    pub ticket: String,
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn found(location: &str) -> ApiResult<Response> {
    let location = HeaderValue::from_str(location)
        .map_err(|error| anyhow::anyhow!("redirect location not a header value: {error}"))?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

fn provider(state: &AppState, name: &str) -> ApiResult<IdentityProvider> {
    state
        .providers
        .get(name)
        .cloned()
        .ok_or_else(|| Problem::not_found(format!("no sign-in provider named {name:?}")).into())
}

/// Start signing in with a provider: 302 to its login page.
#[utoipa::path(get, path = "/api/users/oidc/{provider}/authorize", tag = "sign-in with a provider",
    params(("provider" = String, Path, description = "The provider, e.g. `google`"), AuthorizeParams),
    responses(
        (status = 302, description = "To the provider's authorization endpoint (authorization code flow with PKCE S256, `state` and `nonce`)",
            headers(("Location" = String, description = "The provider's login page"))),
        (status = 404, body = Problem, description = "No provider with this name is configured"),
        (status = 422, body = Problem, description = "`return_to` is not a path on this site starting with a single `/`"),
        (status = 503, body = Problem, description = "The provider cannot be reached (its discovery document failed); retry later"),
    ))]
#[tracing::instrument(skip_all, fields(provider = %name))]
pub async fn authorize(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let provider = provider(&state, &name)?;
    let pairs = query_pairs(query.as_deref());
    let return_to = oidc::return_to(query_value(&pairs, "return_to").unwrap_or("/"))
        .map_err(|error| Problem::validation(vec![error]))?;
    let discovery = provider.discovery().await.map_err(|refusal| {
        tracing::warn!(%refusal, "sign-in provider unavailable");
        let mut problem = Problem::unavailable(format!(
            "signing in with {name} is unavailable right now: {refusal}"
        ));
        problem.retry_after_secs = Some(30);
        ApiError::from(problem)
    })?;
    let signin = PendingSignin {
        state: oidc::random_token(),
        provider: name.clone(),
        nonce: oidc::random_token(),
        pkce_verifier: oidc::random_token(),
        return_to,
        expires_at: Utc::now() + chrono::Duration::seconds(SIGNIN_TTL_SECS),
    };
    let mut conn = state.pool.acquire().await?;
    store::oidc::delete_expired(&mut conn).await?;
    store::oidc::insert_signin(&mut conn, &signin).await?;
    let url = oidc::authorization_url(
        &discovery.authorization_endpoint,
        &AuthorizationRequest {
            client_id: &provider.config.client_id,
            redirect_uri: &provider.config.redirect_uri,
            state: &signin.state,
            nonce: &signin.nonce,
            pkce_verifier: &signin.pkce_verifier,
        },
    );
    found(url.as_str())
}

/// Where the provider sends the browser back: 302 to `/signin/complete` with a one-time ticket
/// or with the reason for refusing.
#[utoipa::path(get, path = "/api/users/oidc/{provider}/callback", tag = "sign-in with a provider",
    params(("provider" = String, Path, description = "The provider, e.g. `google`"), CallbackParams),
    responses(
        (status = 302, description = "Signed in: `/signin/complete?ticket=<one-time, 60 s>&return_to=<path>`. \
Refused (nothing is created): `/signin/complete?error=<code>&detail=<text>` with code \
`invalid_request` (no code or state), `invalid_state` (unknown, expired or already used state), \
`provider_error` (the provider refused, e.g. a replayed code, or sent an error), \
`provider_unavailable`, `invalid_id_token` (signature, issuer, audience, expiry or nonce) or \
`email_not_verified`",
            headers(("Location" = String, description = "The storefront's /signin/complete"))),
        (status = 404, body = Problem, description = "No provider with this name is configured"),
    ))]
#[tracing::instrument(skip_all, fields(provider = %name, user_id))]
pub async fn callback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let provider = provider(&state, &name)?;
    let pairs = query_pairs(query.as_deref());
    let outcome = finish_signin(&state, &provider, &pairs).await?;
    let result = match &outcome {
        Ok(_) => "signed_in",
        Err(refusal) => refusal.code(),
    };
    metrics::counter!("oidc_callbacks_total", "provider" => name, "result" => result).increment(1);
    match outcome {
        Ok((ticket, return_to)) => found(&oidc::completed(&ticket, &return_to)),
        Err(refusal) => {
            tracing::warn!(code = refusal.code(), %refusal, "sign-in refused");
            found(&oidc::refused(&refusal))
        }
    }
}

/// The callback's decision: a ticket and where to return, or why not. Database failures are
/// the outer error (a 500 problem); everything the browser or the provider caused is a
/// [`Refusal`].
async fn finish_signin(
    state: &AppState,
    provider: &IdentityProvider,
    pairs: &[(String, String)],
) -> ApiResult<Result<(String, String), Refusal>> {
    let name = provider.config.name.as_str();
    let state_param = query_value(pairs, "state").filter(|s| !s.is_empty());
    // The state is taken (deleted) before anything else, whatever follows: a state works once.
    let pending = match state_param {
        Some(state_param) => {
            let mut conn = state.pool.acquire().await?;
            store::oidc::take_signin(&mut conn, name, state_param).await?
        }
        None => None,
    };
    if let Some(error) = query_value(pairs, "error") {
        let detail = match query_value(pairs, "error_description") {
            Some(description) => format!("{error}: {description}"),
            None => error.to_owned(),
        };
        return Ok(Err(Refusal::ProviderError(detail)));
    }
    let Some(code) = query_value(pairs, "code").filter(|c| !c.is_empty()) else {
        return Ok(Err(Refusal::InvalidRequest("code")));
    };
    if state_param.is_none() {
        return Ok(Err(Refusal::InvalidRequest("state")));
    }
    let Some(pending) = pending.filter(|p| p.expires_at > Utc::now()) else {
        return Ok(Err(Refusal::InvalidState));
    };
    let identity = match provider
        .redeem_code(code, &pending.pkce_verifier, &pending.nonce)
        .await
    {
        Ok(identity) => identity,
        Err(refusal) => return Ok(Err(refusal)),
    };

    let mut tx = state.pool.begin().await?;
    let user_id = account_for(&mut tx, state, name, &identity).await?;
    tracing::Span::current().record("user_id", tracing::field::display(user_id));
    let ticket = oidc::random_token();
    store::oidc::insert_ticket(
        &mut tx,
        &tokens::hash_refresh_token(&ticket),
        user_id,
        name,
        Utc::now() + chrono::Duration::seconds(TICKET_TTL_SECS),
    )
    .await?;
    tx.commit().await?;
    Ok(Ok((ticket, pending.return_to)))
}

/// The account this identity signs into: the one already linked to it; else the account with
/// its (verified) e-mail, now linked; else a new account without a password, linked, with its
/// `user.registered.v1` (method `google`).
async fn account_for(
    conn: &mut PgConnection,
    state: &AppState,
    provider: &str,
    identity: &VerifiedIdentity,
) -> ApiResult<Uuid> {
    if let Some(user_id) = store::oidc::linked_user(conn, provider, &identity.subject).await? {
        return Ok(user_id);
    }
    let existing = store::users::by_email(conn, &identity.email).await?;
    let user_id = match existing {
        Some(user) => user.id,
        None => {
            let name = oidc::account_name(identity);
            let created = create_user(
                conn,
                state,
                &NewUser {
                    id: Uuid::now_v7(),
                    email: &identity.email,
                    password_hash: None,
                    name: &name,
                    phone: None,
                    locale: "en",
                    role: auth::Role::Customer.as_str(),
                },
                SignInMethod::Google,
            )
            .await?;
            match created {
                Some(user) => user.id,
                // Registered a moment ago (a password registration or this person's other
                // tab racing us): that account is theirs, the e-mail being verified.
                None => store::users::by_email(conn, &identity.email)
                    .await?
                    .map(|user| user.id)
                    .ok_or_else(|| {
                        anyhow::anyhow!("the e-mail was taken, yet no account has it")
                    })?,
            }
        }
    };
    Ok(store::oidc::link(conn, provider, &identity.subject, user_id, &identity.email).await?)
}

/// Trade a one-time sign-in ticket for the platform's tokens (the same answer as
/// `POST /api/users/login`); `user.logged_in.v1` is published with the provider as method.
#[utoipa::path(post, path = "/api/users/oidc/tickets", tag = "sign-in with a provider",
    request_body = TicketRequest,
    responses(
        (status = 200, body = TokenResponse, description = "Signed in"),
        (status = 401, body = Problem, description = "Unknown, already used or expired (60 s) ticket"),
        (status = 400, body = Problem, description = "The body is not JSON"),
        (status = 422, body = Problem, description = "The body is not `{\"ticket\": \"...\"}`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id))]
pub async fn redeem_ticket(
    State(state): State<AppState>,
    Json(body): Json<TicketRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let refused = || {
        ApiError::from(Problem::unauthorized(
            "the sign-in ticket is unknown, already used or expired; sign in again",
        ))
    };
    let mut tx = state.pool.begin().await?;
    let (user_id, method) =
        store::oidc::redeem_ticket(&mut tx, &tokens::hash_refresh_token(body.ticket.trim()))
            .await?
            .ok_or_else(refused)?;
    let user = store::users::by_id(&mut tx, user_id)
        .await?
        .ok_or_else(refused)?;
    tracing::Span::current().record("user_id", tracing::field::display(user.id));
    let tokens = issue_tokens(&mut tx, &state, &user, Uuid::now_v7()).await?;
    let method = match method.as_str() {
        "google" => SignInMethod::Google,
        _ => SignInMethod::Other,
    };
    emit(&mut tx, &state, user.id, UserLoggedIn { user_id, method }).await?;
    tx.commit().await?;
    Ok(Json(tokens))
}
