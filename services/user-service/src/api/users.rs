//! `/api/users/*`: register, login, refresh, logout and the caller's profile.

use auth::{AuthUser, Role};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use contracts::user::{SignInMethod, UserLoggedIn, UserRegistered, UserUpdated};
use contracts::{CloudEvent, EventData};
use messaging::enqueue;
use serde::{Deserialize, Deserializer, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;
use web::{FieldError, Json, Problem};

use super::error::{ApiError, ApiResult};
use super::{AppState, EVENT_SOURCE};
use crate::domain::{throttle, tokens, validation};
use crate::store::users::{NewUser, ProfileChange, UserRow};
use crate::store::{self, refresh_tokens};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(
        example = "ada@example.com",
        max_length = 254,
        pattern = r"^\s*[^\s@\x00-\x1f\x7f-\x9f]{1,64}@[^\s@.\x00-\x1f\x7f-\x9f]+(\.[^\s@.\x00-\x1f\x7f-\x9f]+)+\s*$"
    )]
    pub email: String,
    #[schema(example = "correct horse battery", min_length = 12, max_length = 128)]
    pub password: String,
    #[schema(
        example = "Ada Lovelace",
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*\S[^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[schema(
        example = "+4915112345678",
        pattern = r"^[ -]*\+[ -]*[1-9]([ -]*[0-9]){7,14}[ -]*$"
    )]
    pub phone: Option<String>,
    /// `en` (default) or `zh-CN`, in any case.
    #[schema(pattern = "^([eE][nN]|[zZ][hH]-[cC][nN])$")]
    pub locale: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(pattern = r"\S")]
    pub email: String,
    #[schema(min_length = 1)]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Profile changes; omitted fields stay as they are, `"phone": null` removes the number.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// At least one field (`minProperties`, set in the API document).
pub struct ProfilePatch {
    #[serde(default, deserialize_with = "web::extract::non_null")]
    #[schema(
        nullable = false,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*\S[^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^[ -]*\+[ -]*[1-9]([ -]*[0-9]){7,14}[ -]*$")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "web::extract::non_null")]
    #[schema(nullable = false, pattern = "^([eE][nN]|[zZ][hH]-[cC][nN])$")]
    pub locale: Option<String>,
}

/// Distinguishes a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub locale: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<UserRow> for UserView {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            name: row.name,
            phone: row.phone,
            locale: row.locale,
            role: row.role,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Create an account. The password is hashed with Argon2id; `user.registered.v1` is published.
#[utoipa::path(post, path = "/api/users/register", tag = "users", request_body = RegisterRequest,
    responses(
        (status = 201, body = UserView, description = "Registered"),
        (status = 409, body = Problem, description = "The e-mail is already registered"),
        (status = 422, body = Problem, description = "Invalid fields, each named in `errors`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id))]
pub async fn register(
    State(state): State<AppState>,
    Json(body): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let mut errors = Vec::new();
    let email = validation::email(&body.email)
        .map_err(|e| errors.push(e))
        .ok();
    let _ = validation::password(&body.password).map_err(|e| errors.push(e));
    let name = validation::name(&body.name)
        .map_err(|e| errors.push(e))
        .ok();
    let phone = match body.phone.as_deref() {
        Some(phone) => validation::phone(phone).map_err(|e| errors.push(e)).ok(),
        None => None,
    };
    let locale = validation::locale(body.locale.as_deref().unwrap_or("en"))
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(email), Some(name), Some(locale), true) = (email, name, locale, errors.is_empty())
    else {
        return Err(Problem::validation(errors).into());
    };

    let password_hash = state.passwords.hash(body.password).await?;
    let mut tx = state.pool.begin().await?;
    let user = create_user(
        &mut tx,
        &state,
        &NewUser {
            id: Uuid::now_v7(),
            email: &email,
            password_hash: Some(&password_hash),
            name: &name,
            phone: phone.as_deref(),
            locale: &locale,
            role: Role::Customer.as_str(),
        },
        SignInMethod::Password,
    )
    .await?
    .ok_or_else(|| Problem::conflict("an account with this e-mail already exists"))?;
    tx.commit().await?;
    tracing::Span::current().record("user_id", tracing::field::display(user.id));
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Inserts a user and its `user.registered.v1` event in the caller's transaction; `None` when
/// the e-mail is taken.
pub async fn create_user(
    conn: &mut PgConnection,
    state: &AppState,
    new: &NewUser<'_>,
    method: SignInMethod,
) -> ApiResult<Option<UserRow>> {
    let Some(user) = store::users::insert(conn, new).await? else {
        return Ok(None);
    };
    let event = UserRegistered {
        user_id: user.id,
        email: user.email.clone(),
        name: user.name.clone(),
        phone: user.phone.clone(),
        locale: user.locale.clone(),
        role: user.role.clone(),
        method,
    };
    emit(conn, state, user.id, event).await?;
    Ok(Some(user))
}

/// Writes a `user.*` event about `user_id` to the outbox, in the caller's transaction.
pub(crate) async fn emit<T: EventData>(
    conn: &mut PgConnection,
    state: &AppState,
    user_id: Uuid,
    event: T,
) -> ApiResult<()> {
    let event = CloudEvent::new(EVENT_SOURCE, user_id.to_string(), event);
    enqueue(conn, &state.topics, event).await?;
    Ok(())
}

/// Sign in with e-mail and password. Unknown e-mail and wrong password get the same answer;
/// repeated failures lock the e-mail for a while (429 with `Retry-After`).
#[utoipa::path(post, path = "/api/users/login", tag = "users", request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse, description = "Signed in"),
        (status = 401, body = Problem, description = "Wrong e-mail or password"),
        (status = 429, body = Problem, description = "Too many failed attempts; see Retry-After"),
    ))]
#[tracing::instrument(skip_all, fields(user_id))]
pub async fn login(
    State(state): State<AppState>,
    Json(body): Json<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let mut errors = Vec::new();
    if body.email.trim().is_empty() {
        errors.push(FieldError::new("email", "must not be empty"));
    }
    if body.password.is_empty() {
        errors.push(FieldError::new("password", "must not be empty"));
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    // No account has control characters in its e-mail (registration refuses them), and
    // PostgreSQL refuses NUL in text: answer as for any unknown e-mail, without a query.
    if body
        .email
        .chars()
        .any(|c| c.is_control() && !c.is_whitespace())
    {
        return Err(Problem::unauthorized("invalid e-mail or password").into());
    }
    let throttle_key = body.email.trim().to_lowercase();
    let mut conn = state.pool.acquire().await?;
    if let Some(until) = store::throttle::locked_until(&mut conn, &throttle_key).await? {
        let wait = (until - Utc::now()).num_seconds().max(1) as u64;
        return Err(Problem::too_many_requests(wait, "too many failed sign-in attempts").into());
    }
    let user = store::users::by_email(&mut conn, body.email.trim()).await?;
    drop(conn);

    let verification = state
        .passwords
        .verify_and_upgrade(
            body.password,
            // An account without a password (made by a provider sign-in) is checked against
            // the dummy hash like an unknown e-mail, so it answers the same 401.
            user.as_ref().and_then(|u| u.password_hash.clone()),
        )
        .await?;
    let user = match (user, verification.matches) {
        (Some(user), true) => user,
        _ => {
            let mut conn = state.pool.acquire().await?;
            let failures = store::throttle::record_failure(&mut conn, &throttle_key).await?;
            let config = &state.config;
            if let Some(lock) =
                throttle::lock_after(failures, config.login_max_failures, config.login_lockout)
            {
                store::throttle::lock(&mut conn, &throttle_key, lock).await?;
            }
            return Err(Problem::unauthorized("invalid e-mail or password").into());
        }
    };
    tracing::Span::current().record("user_id", tracing::field::display(user.id));

    let mut tx = state.pool.begin().await?;
    store::throttle::clear(&mut tx, &throttle_key).await?;
    if let Some(hash) = &verification.upgraded_hash {
        // Stored with older hashing settings: replace it now that the password is known.
        store::users::set_password_hash(&mut tx, user.id, hash).await?;
    }
    let tokens = issue_tokens(&mut tx, &state, &user, Uuid::now_v7()).await?;
    let event = UserLoggedIn {
        user_id: user.id,
        method: SignInMethod::Password,
    };
    emit(&mut tx, &state, user.id, event).await?;
    tx.commit().await?;
    Ok(Json(tokens))
}

/// The platform's access token and a new refresh token family for `user` (every sign-in,
/// whatever its method, ends here).
pub(crate) async fn issue_tokens(
    conn: &mut PgConnection,
    state: &AppState,
    user: &UserRow,
    family_id: Uuid,
) -> ApiResult<TokenResponse> {
    let role = user.role.parse::<Role>().map_err(anyhow::Error::msg)?;
    let access_token = state.issuer.issue(user.id, role, &user.email)?;
    let refresh_token = tokens::new_refresh_token();
    let ttl = chrono::Duration::from_std(state.config.refresh_token_ttl)
        .map_err(|error| anyhow::anyhow!("refresh TTL out of range: {error}"))?;
    refresh_tokens::insert(
        conn,
        family_id,
        user.id,
        &tokens::hash_refresh_token(&refresh_token),
        Utc::now() + ttl,
    )
    .await?;
    Ok(TokenResponse {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: state.issuer.ttl_secs(),
    })
}

/// Trade a refresh token for a new access token and a new refresh token. Each refresh token
/// works once; presenting a used one again revokes every token descended from the same login.
#[utoipa::path(post, path = "/api/users/refresh", tag = "users", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse, description = "New token pair"),
        (status = 401, body = Problem, description = "Unknown, expired, revoked or reused token"),
    ))]
#[tracing::instrument(skip_all, fields(user_id))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let refused = || ApiError::from(Problem::unauthorized("the refresh token is not valid"));
    let mut tx = state.pool.begin().await?;
    let hash = tokens::hash_refresh_token(body.refresh_token.trim());
    let token = refresh_tokens::lock_by_hash(&mut tx, &hash)
        .await?
        .ok_or_else(refused)?;
    if token.revoked_at.is_some() || token.expires_at <= Utc::now() {
        return Err(refused());
    }
    if token.used_at.is_some() {
        // Someone holds a copy of a token already exchanged: either the client or a thief is
        // replaying it. Neither can be told apart, so end the whole session family.
        let revoked = refresh_tokens::revoke_family(&mut tx, token.family_id).await?;
        tx.commit().await?;
        tracing::warn!(user_id = %token.user_id, family = %token.family_id, revoked, "refresh token reuse; family revoked");
        return Err(Problem::unauthorized(
            "this refresh token was already used; every session from that sign-in is revoked",
        )
        .into());
    }
    refresh_tokens::mark_used(&mut tx, token.id).await?;
    let user = store::users::by_id(&mut tx, token.user_id)
        .await?
        .ok_or_else(refused)?;
    tracing::Span::current().record("user_id", tracing::field::display(user.id));
    let tokens = issue_tokens(&mut tx, &state, &user, token.family_id).await?;
    tx.commit().await?;
    Ok(Json(tokens))
}

/// End the session the refresh token belongs to. Unknown tokens are accepted silently, so the
/// call is idempotent and reveals nothing.
#[utoipa::path(post, path = "/api/users/logout", tag = "users", request_body = RefreshRequest,
    responses((status = 204, description = "Signed out")))]
#[tracing::instrument(skip_all)]
pub async fn logout(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<StatusCode> {
    let mut tx = state.pool.begin().await?;
    let hash = tokens::hash_refresh_token(body.refresh_token.trim());
    if let Some(token) = refresh_tokens::lock_by_hash(&mut tx, &hash).await? {
        refresh_tokens::revoke_family(&mut tx, token.family_id).await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's profile.
#[utoipa::path(get, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, body = UserView),
        (status = 401, body = Problem, description = "Missing or invalid access token"),
    ))]
#[tracing::instrument(skip_all, fields(user_id))]
pub async fn me(State(state): State<AppState>, caller: AuthUser) -> ApiResult<Json<UserView>> {
    let mut conn = state.pool.acquire().await?;
    let user = store::users::by_id(&mut conn, caller.id)
        .await?
        .ok_or_else(|| Problem::not_found("the account no longer exists"))?;
    Ok(Json(user.into()))
}

/// Change the caller's name, phone or locale; `user.updated.v1` is published.
#[utoipa::path(patch, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    request_body = ProfilePatch,
    responses(
        (status = 200, body = UserView),
        (status = 401, body = Problem),
        (status = 422, body = Problem, description = "Invalid fields, each named in `errors`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id))]
pub async fn update_me(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(body): Json<ProfilePatch>,
) -> ApiResult<Json<UserView>> {
    if body.name.is_none() && body.phone.is_none() && body.locale.is_none() {
        return Err(Problem::validation(vec![FieldError::new(
            "body",
            "send at least one of name, phone, locale",
        )])
        .into());
    }
    let name = body.name.as_deref().map(validation::name).transpose();
    let phone = match body.phone {
        Some(Some(phone)) => validation::phone(&phone).map(|phone| Some(Some(phone))),
        Some(None) => Ok(Some(None)),
        None => Ok(None),
    };
    let locale = body.locale.as_deref().map(validation::locale).transpose();
    let change = match (name, phone, locale) {
        (Ok(name), Ok(phone), Ok(locale)) => ProfileChange {
            name,
            phone,
            locale,
        },
        (name, phone, locale) => {
            let errors = [name.err(), phone.err(), locale.err()]
                .into_iter()
                .flatten()
                .collect();
            return Err(Problem::validation(errors).into());
        }
    };
    let mut tx = state.pool.begin().await?;
    let user = store::users::update_profile(&mut tx, caller.id, &change)
        .await?
        .ok_or_else(|| Problem::not_found("the account no longer exists"))?;
    let event = UserUpdated {
        user_id: user.id,
        email: user.email.clone(),
        name: user.name.clone(),
        phone: user.phone.clone(),
        locale: user.locale.clone(),
    };
    emit(&mut tx, &state, user.id, event).await?;
    tx.commit().await?;
    Ok(Json(user.into()))
}
