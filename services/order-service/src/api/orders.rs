//! `/api/orders*`: place an order, read one, list the caller's, cancel before payment.
//!
//! `POST /api/orders` takes an optional `Idempotency-Key`: a repeated click with the same key
//! and body answers with the first order (200) instead of placing a second; the same key with
//! another body is a 422. A unique index decides, so concurrent duplicates also create one.
//! Placing itself (idempotency, pricing, the risk check, the open-order limit, the order and
//! its event in one transaction) is `crate::placing`; the handler reads the request and shapes
//! the answer.

use auth::{AuthUser, Role};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use web::{Json, Path, Problem};

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::domain::address::ShippingAddress;
use crate::domain::open_orders::TooManyOpen;
use crate::domain::pricing::Requested;
use crate::domain::status::{OrderStatus, Trigger};
use crate::placing::{PlaceOrder, Placed};
use crate::saga::{self, Advanced};
use crate::status_feed::{self, StatusChange};
use crate::store::orders::{self, OrderRow};

const MAX_IDEMPOTENCY_KEY: usize = 200;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// 1 to 50 lines; at most 100 units of one product in all.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<ItemRequest>,
    pub shipping_address: ShippingAddress,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemRequest {
    pub product_id: Uuid,
    #[schema(example = 1, minimum = 1, maximum = 100)]
    pub quantity: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Price {
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderLineView {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Price,
    pub line_total: Price,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub status: OrderStatus,
    /// Why it is held, rejected or cancelled: `risk_review` (REVIEW), `out_of_stock`,
    /// `review_rejected`, `review_timeout` (REJECTED), `customer_request`, `payment_timeout`,
    /// `reservation_timeout` (CANCELLED), `refund_approved` (REFUNDED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub items: Vec<OrderLineView>,
    pub total: Price,
    #[schema(value_type = Object)]
    pub shipping_address: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<Uuid>,
    /// While the order is live: when it is cancelled if it has not moved on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<OrderRow> for OrderView {
    fn from(row: OrderRow) -> Self {
        let status = row.status().unwrap_or(OrderStatus::Pending);
        let currency = row.currency.clone();
        let price = |amount| Price {
            amount,
            currency: currency.clone(),
        };
        OrderView {
            id: row.id,
            user_id: row.user_id,
            status,
            status_reason: row.status_reason,
            items: row
                .items
                .0
                .into_iter()
                .map(|line| OrderLineView {
                    product_id: line.product_id,
                    name: line.name,
                    quantity: line.quantity,
                    unit_price: price(line.unit_amount),
                    line_total: price(line.unit_amount.saturating_mul(line.quantity)),
                })
                .collect(),
            total: price(row.total_amount),
            shipping_address: row.shipping_address.0,
            payment_id: row.payment_id,
            // A held order waits for its review's timer, not for this deadline.
            expires_at: (!status.is_terminal() && status != OrderStatus::Review)
                .then_some(row.expires_at),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub cursor: Option<String>,
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str().map(str::trim) {
        Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => Ok(Some(key.to_owned())),
        _ => Err(Problem::invalid_field(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        )),
    }
}

fn request_hash(body: &CreateOrder) -> anyhow::Result<String> {
    let canonical = serde_json::to_vec(body)?;
    Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(canonical)))
}

/// The problem type of the open-order limit, for clients to switch on.
pub const TOO_MANY_OPEN_ORDERS: &str = "https://ferroshop.dev/problems/too-many-open-orders";

/// 409: the customer holds as many unpaid orders as allowed. A conflict with the customer's
/// own state rather than a 429: waiting does not help, paying or cancelling an order does.
pub(super) fn too_many_open_orders(refused: TooManyOpen) -> Problem {
    let mut problem = Problem::conflict(format!(
        "you have {} unpaid orders, the most allowed is {}: pay or cancel one first",
        refused.open, refused.max
    ));
    problem.problem_type = TOO_MANY_OPEN_ORDERS.into();
    problem.title = "Too many open orders".into();
    problem
}

/// Place an order.
///
/// Prices come from the product replica, never from the client. The order starts `PENDING`;
/// product-service then reserves its stock and the order becomes `AWAITING_PAYMENT` (or
/// `REJECTED` when stock is short). Follow it with `GET /api/orders/{id}/events`.
#[utoipa::path(
    post,
    path = "/api/orders",
    request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "repeat-safe placement")),
    responses(
        (status = 201, description = "Placed (PENDING). Classified once by the risk table; an order it sends to review moves to REVIEW instead of AWAITING_PAYMENT when its stock is reserved. With the workflow engine unreachable, an order at or above ORDER_REVIEW_AMOUNT is reviewed and any other accepted unchecked; placing never fails on the engine's account", body = OrderView),
        (status = 200, description = "The same Idempotency-Key and body placed this order before", body = OrderView),
        (status = 401, body = web::Problem),
        (status = 409, description = "The customer already holds the most unpaid orders allowed (`ORDER_MAX_OPEN_PER_USER`, default 5); type `https://ferroshop.dev/problems/too-many-open-orders`", body = web::Problem),
        (status = 422, description = "Unknown or withdrawn product, mixed currencies, bad quantity or address", body = web::Problem),
        (status = 503, description = "Nothing placed. Type `https://ferroshop.dev/problems/busy`: orders arrive faster than the checkout completes: at least `ORDER_ADMISSION_MAX_LATE` (default 16) orders have waited over `ORDER_ADMISSION_MAX_WAIT_MS` (default 2000) for their reservation, or a consumer group of `order.events` on the saga's path (`ORDER_ADMISSION_WATCH_GROUPS`) is at least `ORDER_ADMISSION_MAX_BACKLOG_MS` (default 1000) behind; retry after `Retry-After` seconds; or type `unavailable`: PostgreSQL is unreachable", body = web::Problem, headers(("Retry-After" = u64, description = "seconds to wait")))
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(body): Json<CreateOrder>,
) -> ApiResult<Response> {
    // Before any work: a refused order costs the shop nothing.
    state.admission.check()?;
    let idempotency_key = idempotency_key(&headers)?;
    let request_hash = request_hash(&body)?;
    let lines = body
        .items
        .iter()
        .map(|item| Requested {
            product_id: item.product_id,
            quantity: item.quantity,
        })
        .collect();
    let placed = state
        .placing
        .place(PlaceOrder {
            user_id: user.id,
            idempotency_key,
            request_hash,
            lines,
            shipping_address: body.shipping_address,
        })
        .await?;
    let order = match placed {
        Placed::Repeat(order) => {
            return Ok((StatusCode::OK, Json(OrderView::from(order))).into_response());
        }
        Placed::New(order) => order,
    };
    let location = HeaderValue::from_str(&format!("/api/orders/{}", order.id));
    let mut response = (StatusCode::CREATED, Json(OrderView::from(order))).into_response();
    if let Ok(location) = location {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// Reads an order the caller may see: their own, or any for an admin. Others' orders are
/// "not found", so ids cannot be probed.
pub(crate) async fn visible_order(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> ApiResult<OrderRow> {
    let mut conn = state.pool.acquire().await?;
    match orders::by_id(&mut conn, id).await? {
        Some(order) if order.user_id == user.id || user.role == Role::Admin => Ok(order),
        _ => Err(Problem::not_found(format!("no order {id}")).into()),
    }
}

/// One order.
#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = OrderView),
        (status = 404, description = "No such order, or another customer's", body = web::Problem)
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(visible_order(&state, &user, id).await?.into()))
}

/// The order's status, live (Server-Sent Events).
///
/// A `status` event with the status now, at once, then one per change, until the order is
/// `PAID`, `REJECTED` or `CANCELLED`, when the stream ends. Use it instead of polling
/// `GET /api/orders/{id}`: the browser's `EventSource` (send the token as a bearer header
/// through a fetch-based client) or any SSE client. Comments every 15 s keep idle connections
/// open; a stream also ends after 5 minutes, and `EventSource` reconnects by itself.
#[utoipa::path(
    get,
    path = "/api/orders/{id}/events",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "`text/event-stream` of `status` events, each's data a StatusChange", content_type = "text/event-stream", body = StatusChange),
        (status = 401, body = web::Problem),
        (status = 404, description = "No such order, or another customer's", body = web::Problem)
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    // Subscribed before the read, so a change committed in between is not missed.
    let changes = state.feed.subscribe();
    let order = visible_order(&state, &user, id).await?;
    let current = status_feed::current(&order).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("order {id} has an unknown stored status"))
    })?;
    let stream = state.feed.stream(state.pool.clone(), changes, current);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
}

/// The caller's orders, newest first.
#[utoipa::path(
    get,
    path = "/api/orders",
    params(ListParams),
    responses((status = 200, body = OrderPage), (status = 400, body = web::Problem)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<OrderPage>> {
    let Query(params) = params.map_err(|rejection| {
        Problem::bad_request(format!("cannot read the query: {}", rejection.body_text()))
    })?;
    let (limit, before) = page_window(params.limit, params.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    let rows = orders::list_for_user(&mut conn, user.id, before, limit + 1).await?;
    Ok(Json(page_of(rows, limit)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AdminListParams {
    /// Only orders in this status (`PENDING`, `AWAITING_PAYMENT`, `PAID`, `REJECTED`,
    /// `CANCELLED`, `REFUNDED`); absent or empty: all.
    #[param(pattern = r"^\s*(PENDING|AWAITING_PAYMENT|PAID|REJECTED|CANCELLED|REFUNDED)?\s*$")]
    pub status: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub cursor: Option<String>,
}

/// Every customer's orders, newest first, optionally filtered by status (role admin).
#[utoipa::path(
    get,
    path = "/api/admin/orders",
    params(AdminListParams),
    responses(
        (status = 200, body = OrderPage),
        (status = 400, description = "Unreadable query", body = web::Problem),
        (status = 401, body = web::Problem),
        (status = 403, description = "Not an admin", body = web::Problem),
        (status = 422, description = "A bad limit, cursor or status, named in `errors`", body = web::Problem)
    ),
    security(("bearer" = []))
)]
pub async fn admin_list(
    State(state): State<AppState>,
    user: AuthUser,
    params: Result<Query<AdminListParams>, QueryRejection>,
) -> ApiResult<Json<OrderPage>> {
    if user.role != Role::Admin {
        return Err(Problem::forbidden("only admins see every order").into());
    }
    let Query(params) = params.map_err(|rejection| {
        Problem::bad_request(format!("cannot read the query: {}", rejection.body_text()))
    })?;
    let status = match params.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(text.parse::<OrderStatus>().map_err(|_| {
            Problem::invalid_field(
                "status",
                "must be PENDING, AWAITING_PAYMENT, PAID, REJECTED or CANCELLED",
            )
        })?),
    };
    let (limit, before) = page_window(params.limit, params.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    let rows = orders::list_all(&mut conn, status, before, limit + 1).await?;
    Ok(Json(page_of(rows, limit)))
}

/// The page size (1 to 100, default 20) and the id to continue below.
fn page_window(limit: Option<i64>, cursor: Option<&str>) -> Result<(i64, Option<Uuid>), Problem> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Problem::invalid_field("limit", "must be between 1 and 100"));
    }
    let before = match cursor {
        None | Some("") => None,
        Some(cursor) => Some(
            Uuid::parse_str(cursor)
                .map_err(|_| Problem::invalid_field("cursor", "is not a cursor from this API"))?,
        ),
    };
    Ok((limit, before))
}

/// `rows` (one more than `limit` when another page exists) as a page with its cursor.
fn page_of(rows: Vec<OrderRow>, limit: i64) -> OrderPage {
    let more = rows.len() as i64 > limit;
    let items: Vec<OrderView> = rows
        .into_iter()
        .take(limit as usize)
        .map(OrderView::from)
        .collect();
    let next_cursor = more
        .then(|| items.last().map(|order| order.id.to_string()))
        .flatten();
    OrderPage { items, next_cursor }
}

/// Cancel an order before it is paid; its reserved stock is released.
#[utoipa::path(
    post,
    path = "/api/orders/{id}/cancel",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Cancelled", body = OrderView),
        (status = 404, body = web::Problem),
        (status = 409, description = "Already paid, rejected or cancelled", body = web::Problem)
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<OrderView>> {
    visible_order(&state, &user, id).await?;
    let mut tx = state.pool.begin().await?;
    let outcome = saga::advance(
        &mut tx,
        &state.saga,
        id,
        Trigger::CustomerCancel,
        None,
        "cancelled by the customer",
    )
    .await?;
    match outcome {
        Advanced::Moved(order) => {
            tx.commit().await?;
            Ok(Json(OrderView::from(*order)))
        }
        Advanced::Illegal(status) => Err(Problem::conflict(format!(
            "the order is {status} and can no longer be cancelled"
        ))
        .into()),
        Advanced::Unchanged(order) => Ok(Json(OrderView::from(*order))),
        Advanced::NotFound => Err(Problem::not_found(format!("no order {id}")).into()),
    }
}
