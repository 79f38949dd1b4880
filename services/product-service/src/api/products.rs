//! `/api/products*`: public listing and product pages, admin writes and stock adjustments.
//!
//! Every write to an existing product reads the product, computes the state after the change
//! and its event, and commits both with one `findOneAndUpdate` guarded by the version it read.
//! The event therefore carries exactly the committed snapshot. A PATCH carries the client's
//! `version`: stale, or overtaken by another write before it commits, it is a 409. A delete or
//! a stock adjustment has no version of its own, so one that loses a race to another writer of
//! the product (an order's reservation, say) is decided again on the product as it is then,
//! a bounded number of times (`messaging::mongo::ConflictRetry`), then 503.

use std::sync::Arc;

use auth::AdminUser;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use contracts::product::{
    Money, ProductCreated, ProductDeleted, ProductImage, ProductSnapshot, ProductUpdated,
};
use contracts::{CloudEvent, EventData};
use messaging::mongo::ConflictRetry;
use mongodb::bson::{self, Document, doc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use web::{FieldError, Json, Path, Problem};

use super::error::{ApiError, ApiResult};
use super::{AppState, EVENT_SOURCE};
use crate::domain::listing::{self, Cursor, Sort};
use crate::domain::{search, stock, validation};
use crate::events::outbox::PendingEvent;
use crate::store::products::{self, Adjustment, ListQuery, ProductDoc, StockDoc};

/// An amount of money in minor units (cents) and its ISO 4217 currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[schema(example = 2999)]
    pub amount: i64,
    #[schema(example = "EUR")]
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    #[schema(example = "https://img.example.com/kettle.jpg")]
    pub url: String,
    #[serde(default)]
    pub alt: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stock {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

/// A product as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductView {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub tags: Vec<String>,
    pub price: Price,
    /// Nested attributes of any shape.
    #[schema(value_type = Object)]
    pub specs: Value,
    pub images: Vec<Image>,
    pub stock: Stock,
    pub active: bool,
    /// Send it back with a PATCH; a stale one is refused with 409.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ProductSnapshot> for ProductView {
    fn from(s: ProductSnapshot) -> Self {
        Self {
            id: s.id,
            sku: s.sku,
            name: s.name,
            description: s.description,
            category: s.category,
            tags: s.tags,
            price: Price {
                amount: s.price.amount,
                currency: s.price.currency,
            },
            specs: s.specs,
            images: s
                .images
                .into_iter()
                .map(|i| Image {
                    url: i.url,
                    alt: i.alt,
                })
                .collect(),
            stock: Stock {
                available: s.stock.available,
                reserved: s.stock.reserved,
                sold: s.stock.sold,
            },
            active: s.active,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

fn view(product: &ProductDoc) -> ApiResult<ProductView> {
    Ok(product.snapshot()?.into())
}

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /api/products`; every parameter is optional.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Case-insensitive text searched in name, description and tags.
    pub q: Option<String>,
    pub category: Option<String>,
    /// Lowest price in minor units.
    pub min_price: Option<String>,
    /// Highest price in minor units.
    pub max_price: Option<String>,
    /// `true`: only products with available stock.
    pub in_stock: Option<String>,
    /// `newest` (default), `price`, `-price` or `name`.
    pub sort: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    #[schema(example = "KT-100")]
    pub sku: String,
    #[schema(example = "Steel kettle")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[schema(example = "kitchen")]
    pub category: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub price: Price,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub specs: Value,
    #[serde(default)]
    pub images: Vec<Image>,
    /// Units available at creation (default 0).
    #[serde(default)]
    pub initial_stock: i64,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Changes to a product; omitted fields stay as they are. The SKU cannot change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    /// The version last read; a stale one is refused with 409.
    pub version: i64,
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub tags: Option<Vec<String>>,
    pub price: Option<Price>,
    #[schema(value_type = Option<Object>)]
    pub specs: Option<Value>,
    pub images: Option<Vec<Image>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjustment {
    /// Units to add (positive) or remove (negative); available stock never goes below zero.
    #[schema(example = -2)]
    pub delta: i64,
    #[schema(example = "damaged in the warehouse")]
    pub reason: String,
}

fn collect<T>(errors: &mut Vec<FieldError>, outcome: Result<T, FieldError>) -> Option<T> {
    outcome.map_err(|error| errors.push(error)).ok()
}

fn money(errors: &mut Vec<FieldError>, price: &Price) -> Option<Money> {
    let candidate = Money {
        amount: price.amount,
        currency: price.currency.clone(),
    };
    validation::price("price", &candidate)
        .map_err(|mut found| errors.append(&mut found))
        .ok()
}

fn images(errors: &mut Vec<FieldError>, images: &[Image]) -> Option<Vec<ProductImage>> {
    let candidate: Vec<ProductImage> = images
        .iter()
        .map(|i| ProductImage {
            url: i.url.clone(),
            alt: i.alt.clone(),
        })
        .collect();
    collect(errors, validation::images(&candidate))
}

/// The catalog, filtered, searched, sorted and paged by cursor. Only active products.
#[utoipa::path(get, path = "/api/products", tag = "products", params(ListParams),
    responses(
        (status = 200, body = ProductPage),
        (status = 422, body = Problem, description = "A parameter is invalid; it is named in `errors`"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<ProductPage>> {
    let Query(params) = params.map_err(|rejection| {
        Problem::bad_request(format!("cannot read the query: {}", rejection.body_text()))
    })?;
    let mut errors = Vec::new();
    let text_pattern = match params.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) if q.chars().count() > search::MAX_QUERY_CHARS => {
            errors.push(FieldError::new(
                "q",
                format!("must be at most {} characters", search::MAX_QUERY_CHARS),
            ));
            None
        }
        Some(q) => Some(search::literal_pattern(q)),
        None => None,
    };
    let category = match params.category.as_deref().filter(|c| !c.trim().is_empty()) {
        Some(category) => collect(&mut errors, validation::category("category", category)),
        None => None,
    };
    let min_price = collect(
        &mut errors,
        listing::amount("min_price", params.min_price.as_deref()),
    )
    .flatten();
    let max_price = collect(
        &mut errors,
        listing::amount("max_price", params.max_price.as_deref()),
    )
    .flatten();
    let in_stock = collect(
        &mut errors,
        listing::flag("in_stock", params.in_stock.as_deref()),
    )
    .flatten()
    .unwrap_or(false);
    let sort = collect(&mut errors, Sort::parse(params.sort.as_deref()));
    let limit = collect(&mut errors, listing::limit(params.limit.as_deref()));
    let after = match (sort, params.cursor.as_deref()) {
        (Some(sort), Some(token)) => collect(&mut errors, Cursor::decode(token, sort)),
        _ => None,
    };
    if let (Some(min), Some(max)) = (min_price, max_price)
        && min > max
    {
        errors.push(FieldError::new("max_price", "must not be below min_price"));
    }
    let (Some(sort), Some(limit), true) = (sort, limit, errors.is_empty()) else {
        return Err(Problem::validation(errors).into());
    };
    let query = ListQuery {
        text_pattern,
        category,
        min_price,
        max_price,
        in_stock,
        sort,
        after,
        limit,
    };
    let mut found = state.products.list(&query).await?;
    let next_cursor = if found.len() as i64 > limit {
        found.truncate(limit as usize);
        match found.last() {
            Some(last) => Some(
                Cursor {
                    sort,
                    key: products::sort_key(last, sort),
                    id: last.uuid()?,
                }
                .encode(),
            ),
            None => None,
        }
    } else {
        None
    };
    let items = found.iter().map(view).collect::<ApiResult<_>>()?;
    Ok(Json(ProductPage { items, next_cursor }))
}

/// One active product.
#[utoipa::path(get, path = "/api/products/{id}", tag = "products",
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, body = ProductView),
        (status = 404, body = Problem, description = "No such product, or it was deleted"),
    ))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ProductView>> {
    // Concurrent misses of one id share a single load: when a popular product's entry
    // expires, one read goes to the database and the other requests wait for it, instead of
    // every request in flight reading it at once (measured before: p99 80-160 ms at 20% load,
    // one stampede per TTL).
    let loaded = state
        .cache
        .try_get_with(id, async {
            let product = state
                .products
                .get(&id)
                .await?
                .filter(|product| product.active)
                .ok_or_else(not_found)?;
            Ok::<_, ApiError>(Arc::new(view(&product)?))
        })
        .await;
    match loaded {
        Ok(product) => Ok(Json(product.as_ref().clone())),
        Err(error) => Err(match error.as_ref() {
            ApiError::Problem(problem) => problem.clone().into(),
            ApiError::Internal(error) => anyhow::anyhow!("{error:#}").into(),
        }),
    }
}

fn not_found() -> Problem {
    Problem::not_found("no such product")
}

/// Add a product (admin). `product.created.v1` is published.
#[utoipa::path(post, path = "/api/products", tag = "products", security(("bearer" = [])),
    request_body = NewProduct,
    responses(
        (status = 201, body = ProductView, description = "Created"),
        (status = 401, body = Problem), (status = 403, body = Problem, description = "Not an admin"),
        (status = 409, body = Problem, description = "The SKU exists already"),
        (status = 422, body = Problem, description = "Invalid fields, each named in `errors`"),
    ))]
#[tracing::instrument(skip_all, fields(product_id))]
pub async fn create(
    State(state): State<AppState>,
    _admin: AdminUser,
    Json(body): Json<NewProduct>,
) -> ApiResult<(StatusCode, Json<ProductView>)> {
    let mut errors = Vec::new();
    let sku = collect(&mut errors, validation::sku(&body.sku));
    let name = collect(&mut errors, validation::name(&body.name));
    let description = collect(&mut errors, validation::description(&body.description));
    let category = collect(
        &mut errors,
        validation::category("category", &body.category),
    );
    let tags = collect(&mut errors, validation::tags(&body.tags));
    let price = money(&mut errors, &body.price);
    let specs = collect(&mut errors, validation::specs(&body.specs));
    let images = images(&mut errors, &body.images);
    let initial_stock = collect(&mut errors, stock::initial(body.initial_stock));
    let (
        Some(sku),
        Some(name),
        Some(description),
        Some(category),
        Some(tags),
        Some(price),
        Some(specs),
        Some(images),
        Some(initial_stock),
    ) = (
        sku,
        name,
        description,
        category,
        tags,
        price,
        specs,
        images,
        initial_stock,
    )
    else {
        return Err(Problem::validation(errors).into());
    };

    let id = Uuid::now_v7();
    tracing::Span::current().record("product_id", tracing::field::display(id));
    let now = bson::DateTime::now();
    let mut product = ProductDoc {
        id: id.to_string(),
        sku,
        name,
        description,
        category,
        tags,
        price,
        specs,
        images,
        stock: StockDoc {
            available: initial_stock,
            reserved: 0,
        },
        sold: 0,
        initial_stock,
        adjusted_total: 0,
        adjustments: Vec::new(),
        reservations: Default::default(),
        active: true,
        version: 1,
        created_at: now,
        updated_at: now,
        pending_events: Vec::new(),
        outbox_pending: false,
    };
    let event = ProductCreated(product.snapshot()?);
    product.pending_events = vec![pending(&state, id, event)?];
    if !state.products.insert(&product).await? {
        return Err(Problem::conflict("a product with this SKU exists already").into());
    }
    state.relay_wake.written(id.to_string());
    Ok((StatusCode::CREATED, Json(view(&product)?)))
}

fn pending<T: EventData>(state: &AppState, id: Uuid, data: T) -> ApiResult<PendingEvent> {
    let event = CloudEvent::new(EVENT_SOURCE, id.to_string(), data);
    Ok(PendingEvent::new(&state.topics, event)?)
}

/// A write to an existing product, decided from the product as read.
struct Change<T> {
    /// The product after the change (next version).
    after: ProductDoc,
    event: T,
    /// What the write relies on beyond the version read (the invariant it must not break).
    filter: Document,
    /// The change's own operators; the version, timestamp and event are added by [`commit`].
    update: Document,
}

/// Commits `change` (decided on a read at `before_version`) with its event, provided the
/// product is still active and at that version; `None` if another write came first.
async fn commit<T: EventData>(
    state: &AppState,
    before_version: i64,
    change: Change<T>,
) -> ApiResult<Option<ProductDoc>> {
    let Change {
        after,
        event,
        filter: extra_filter,
        update,
    } = change;
    let id = after.uuid()?;
    let event = pending(state, id, event)?.to_document()?;
    let update = products::with_event(update, &after, event);
    let mut filter = doc! {"active": true};
    filter.extend(extra_filter);
    let committed = state
        .products
        .update_at_version(&id, before_version, filter, update)
        .await?;
    if committed.is_some() {
        state.cache.invalidate(&id).await;
        state.relay_wake.written(id.to_string());
    }
    Ok(committed)
}

/// Reads active product `id`, lets `decide` compute the change (or refuse it), and commits
/// it; a change that lost a race is decided again on a fresh read, a bounded number of times,
/// then 503.
async fn change_with_retry<T: EventData>(
    state: &AppState,
    id: &Uuid,
    decide: impl Fn(&ProductDoc) -> ApiResult<Change<T>>,
) -> ApiResult<ProductDoc> {
    let mut retry = ConflictRetry::new();
    loop {
        let before = current(state, id).await?;
        let change = decide(&before)?;
        if let Some(committed) = commit(state, before.version, change).await? {
            return Ok(committed);
        }
        if !retry.again().await {
            tracing::warn!(
                conflicts = retry.conflicts(),
                "the product kept changing; giving up"
            );
            return Err(busy());
        }
    }
}

/// The active product, or 404.
async fn current(state: &AppState, id: &Uuid) -> ApiResult<ProductDoc> {
    Ok(state
        .products
        .get(id)
        .await?
        .filter(|product| product.active)
        .ok_or_else(not_found)?)
}

fn bson_value<T: Serialize>(value: &T) -> ApiResult<bson::Bson> {
    bson::to_bson(value).map_err(|error| ApiError::Internal(anyhow::Error::new(error)))
}

/// Change a product (admin), with the `version` last read. `product.updated.v1` is published.
#[utoipa::path(patch, path = "/api/products/{id}", tag = "products", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    request_body = ProductPatch,
    responses(
        (status = 200, body = ProductView),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "`version` is stale: read the product again"),
        (status = 422, body = Problem, description = "Invalid or unknown fields, each named in `errors`"),
    ))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn update(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<Uuid>,
    Json(body): Json<ProductPatch>,
) -> ApiResult<Json<ProductView>> {
    let mut errors = Vec::new();
    let name = body
        .name
        .as_deref()
        .and_then(|v| collect(&mut errors, validation::name(v)));
    let description = body
        .description
        .as_deref()
        .and_then(|v| collect(&mut errors, validation::description(v)));
    let category = body
        .category
        .as_deref()
        .and_then(|v| collect(&mut errors, validation::category("category", v)));
    let tags = body
        .tags
        .as_deref()
        .and_then(|v| collect(&mut errors, validation::tags(v)));
    let price = body.price.as_ref().and_then(|v| money(&mut errors, v));
    let specs = body
        .specs
        .as_ref()
        .and_then(|v| collect(&mut errors, validation::specs(v)));
    let new_images = body.images.as_deref().and_then(|v| images(&mut errors, v));
    let nothing = body.name.is_none()
        && body.description.is_none()
        && body.category.is_none()
        && body.tags.is_none()
        && body.price.is_none()
        && body.specs.is_none()
        && body.images.is_none();
    if nothing {
        errors.push(FieldError::new(
            "body",
            "send at least one of name, description, category, tags, price, specs, images",
        ));
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }

    let before = current(&state, &id).await?;
    if before.version != body.version {
        return Err(stale(before.version).into());
    }
    let mut after = products::next_version(&before);
    after.name = name.unwrap_or(after.name);
    after.description = description.unwrap_or(after.description);
    after.category = category.unwrap_or(after.category);
    after.tags = tags.unwrap_or(after.tags);
    after.price = price.unwrap_or(after.price);
    after.specs = specs.unwrap_or(after.specs);
    after.images = new_images.unwrap_or(after.images);
    let event = ProductUpdated(after.snapshot()?);
    // Unchanged fields are set to what they are; the version guard makes that safe.
    let update = doc! {"$set": catalog_fields(&after)?};
    let change = Change {
        after,
        event,
        filter: Document::new(),
        update,
    };
    match commit(&state, before.version, change).await? {
        Some(committed) => Ok(Json(view(&committed)?)),
        // Another write came between the read and the update: the client's version is stale
        // now (or the product was withdrawn: 404).
        None => Err(stale(current(&state, &id).await?.version).into()),
    }
}

/// The fields a PATCH may change, as stored.
fn catalog_fields(product: &ProductDoc) -> ApiResult<Document> {
    Ok(doc! {
        "name": &product.name,
        "description": &product.description,
        "category": &product.category,
        "tags": &product.tags,
        "price": bson_value(&product.price)?,
        "specs": bson_value(&product.specs)?,
        "images": bson_value(&product.images)?,
    })
}

fn stale(current_version: i64) -> Problem {
    Problem::conflict(format!(
        "the product changed since it was read (it is at version {current_version}); read it again and retry"
    ))
}

fn busy() -> ApiError {
    Problem::unavailable("the product is changing too often right now; try again").into()
}

/// Withdraw a product (admin): it disappears from listings and product pages, and
/// `product.deleted.v1` is published. The document stays (orders refer to it).
#[utoipa::path(delete, path = "/api/products/{id}", tag = "products", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 503, body = Problem, description = "The product kept changing under concurrent writes; try again"),
    ))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn delete(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    change_with_retry(&state, &id, |before| {
        let mut after = products::next_version(before);
        after.active = false;
        Ok(Change {
            event: ProductDeleted(after.snapshot()?),
            after,
            filter: Document::new(),
            update: doc! {"$set": {"active": false}},
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add or remove available stock (admin), with a reason; never below zero.
/// `product.updated.v1` is published with the new levels.
#[utoipa::path(post, path = "/api/products/{id}/stock", tag = "products", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    request_body = StockAdjustment,
    responses(
        (status = 200, body = ProductView, description = "Adjusted"),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`delta` would take stock below zero, or a field is invalid"),
        (status = 503, body = Problem, description = "The product kept changing under concurrent writes; try again"),
    ))]
#[tracing::instrument(skip_all, fields(product_id = %id, delta = body.delta))]
pub async fn adjust_stock(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<Uuid>,
    Json(body): Json<StockAdjustment>,
) -> ApiResult<Json<ProductView>> {
    let mut errors = Vec::new();
    collect(&mut errors, stock::check_delta(body.delta));
    let reason = collect(&mut errors, stock::reason(&body.reason));
    let (Some(reason), true) = (reason, errors.is_empty()) else {
        return Err(Problem::validation(errors).into());
    };
    let committed = change_with_retry(&state, &id, |before| {
        let available = stock::apply(before.stock.available, body.delta)
            .map_err(|e| Problem::validation(vec![e]))?;
        let mut after = products::next_version(before);
        after.stock.available = available;
        after.adjusted_total += body.delta;
        let adjustment = Adjustment {
            delta: body.delta,
            reason: reason.clone(),
            at: after.updated_at,
            by: admin.id.to_string(),
        };
        Ok(Change {
            event: ProductUpdated(after.snapshot()?),
            after,
            // The version makes the update exact; the stock condition states the invariant in
            // the database too, whatever the code above computed.
            filter: doc! {"stock.available": {"$gte": -body.delta}},
            update: doc! {
                "$inc": {"stock.available": body.delta, "adjusted_total": body.delta},
                "$push": {"adjustments": {
                    "$each": [bson_value(&adjustment)?],
                    "$slice": -stock::ADJUSTMENT_LOG_LEN,
                }},
            },
        })
    })
    .await?;
    Ok(Json(view(&committed)?))
}
