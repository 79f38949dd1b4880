//! Axum extractors: `AuthUser` for any signed-in caller, `AdminUser` for admins only.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;
use web::Problem;

use crate::claims::Role;
use crate::verify::{AuthError, TokenVerifier};

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: Role,
    pub email: String,
}

impl From<AuthError> for Problem {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => Problem::unauthorized("a bearer access token is required"),
            AuthError::Invalid(reason) => {
                tracing::debug!(%reason, "token refused");
                Problem::unauthorized("the access token is invalid or expired")
            }
            AuthError::KeysUnavailable(reason) => {
                tracing::warn!(%reason, "cannot load the token keys");
                Problem::unavailable("cannot verify tokens right now")
            }
        }
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    TokenVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(AuthError::Missing)?;
        let claims = TokenVerifier::from_ref(state).verify(token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.sub));
        Ok(AuthUser {
            id: claims.sub,
            role: claims.role,
            email: claims.email,
        })
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A verified caller with the admin role; customers get 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser(pub AuthUser);

impl<S> FromRequestParts<S> for AdminUser
where
    TokenVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if user.role != Role::Admin {
            return Err(Problem::forbidden("this action needs the admin role"));
        }
        Ok(AdminUser(user))
    }
}
