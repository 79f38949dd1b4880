//! `/api/products*`: public listing, search, suggest and product pages (all served from the
//! in-memory read model, `crate::catalog`), admin writes and stock adjustments.
//!
//! The handlers read and check the request and shape the answer; the writes themselves (the
//! guarded update with its event, the retry on a lost race, showing the admin their own write
//! at once) are `crate::catalog::writes`. A PATCH carries the client's `version`: stale, or
//! overtaken by another write before it commits, it is a 409. A delete or a stock adjustment
//! that keeps losing races to other writers of the product is a 503.

use std::collections::BTreeMap;

use auth::AdminUser;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{ACCEPT_LANGUAGE, CACHE_CONTROL};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use chrono::{DateTime, Utc};
use contracts::product::{Money, ProductImage, ProductSnapshot, StockLevels, Translation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use web::{FieldError, Json, Path, Problem};

use super::AppState;
use super::error::ApiResult;
use crate::catalog::{self, Freshness, writes::CatalogEdits, writes::ProductDraft};
use crate::domain::facets::Facets;
use crate::domain::listing::{self, Cursor, Sort};
use crate::domain::{language, search, stock, validation};
use crate::store::products::ProductDoc;

/// An amount of money in minor units (cents) and its ISO 4217 currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[schema(example = 2999, minimum = 1, maximum = 100_000_000)]
    pub amount: i64,
    #[schema(example = "EUR", pattern = "^(EUR|USD|GBP|CNY|JPY)$")]
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    #[schema(
        example = "https://img.example.com/kettle.jpg",
        max_length = 2048,
        pattern = r"^\s*https?://\S*\s*$"
    )]
    pub url: String,
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    pub alt: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stock {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

/// A product's name and description in one more language.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TranslationBody {
    /// 1 to 200 characters.
    #[schema(
        example = "不锈钢水壶",
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*\S[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// Up to 5,000 characters.
    #[serde(default)]
    #[schema(max_length = 5000, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    pub description: String,
}

/// A product as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductView {
    pub id: Uuid,
    pub sku: String,
    /// In the answer's language (`lang` or `Accept-Language`) when the product has it, else
    /// the base name.
    pub name: String,
    /// In the same language as `name`.
    pub description: String,
    /// The language `name` and `description` are in, when it is known to be the one asked
    /// for (absent: the product's base text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// The base name and description in other languages, by language (`en`, `zh-CN`); absent
    /// when there are none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub translations: BTreeMap<String, TranslationBody>,
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

impl ProductView {
    /// `s` as shown to a reader of `lang` (the language chosen as [`ProductViewRef::of`] does).
    pub fn of(s: &ProductSnapshot, lang: Option<&str>) -> Self {
        let ProductViewRef {
            name,
            description,
            lang: shown,
            ..
        } = ProductViewRef::of(s, lang);
        Self {
            id: s.id,
            sku: s.sku.clone(),
            name: name.to_owned(),
            description: description.to_owned(),
            lang: shown.map(str::to_owned),
            translations: s
                .translations
                .iter()
                .map(|(lang, t)| {
                    (
                        lang.clone(),
                        TranslationBody {
                            name: t.name.clone(),
                            description: t.description.clone(),
                        },
                    )
                })
                .collect(),
            category: s.category.clone(),
            tags: s.tags.clone(),
            price: Price {
                amount: s.price.amount,
                currency: s.price.currency.clone(),
            },
            specs: s.specs.clone(),
            images: s
                .images
                .iter()
                .map(|i| Image {
                    url: i.url.clone(),
                    alt: i.alt.clone(),
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

/// [`ProductView`] borrowed from a product of the read model: the same JSON, field for field,
/// written straight from the product instead of a copy of it. Building owned views copied
/// every string, tag, image, translation and the specs of each product on a page before
/// writing them out once; over 100,000 products the allocations, copies and frees of those
/// copies were about a sixth of a search's CPU (`perf`, docs/ARCHITECTURE.md).
#[derive(Serialize)]
pub struct ProductViewRef<'a> {
    id: Uuid,
    sku: &'a str,
    name: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lang: Option<&'a str>,
    #[serde(skip_serializing_if = "no_translations")]
    translations: &'a BTreeMap<String, Translation>,
    category: &'a str,
    tags: &'a [String],
    price: &'a Money,
    specs: &'a Value,
    images: &'a [ProductImage],
    stock: &'a StockLevels,
    active: bool,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn no_translations(translations: &&BTreeMap<String, Translation>) -> bool {
    translations.is_empty()
}

impl<'a> ProductViewRef<'a> {
    /// `s` as shown to a reader of `lang`: the name and description in that language when
    /// the product has it, else the base ones.
    pub fn of(s: &'a ProductSnapshot, lang: Option<&'a str>) -> Self {
        let shown = language::shown(s, lang);
        Self {
            id: s.id,
            sku: &s.sku,
            name: shown.name,
            description: shown.description,
            lang: shown.lang,
            translations: &s.translations,
            category: &s.category,
            tags: &s.tags,
            price: &s.price,
            specs: &s.specs,
            images: &s.images,
            stock: &s.stock,
            active: s.active,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// [`ProductPage`] with its items as the JSON of their views ([`super::views`]).
#[derive(Serialize)]
struct ProductPageRef<'a> {
    items: Vec<&'a RawValue>,
    next_cursor: Option<&'a str>,
    total: u64,
    facets: &'a Facets,
}

fn view(product: &ProductDoc) -> ApiResult<ProductView> {
    Ok(ProductView::of(&product.snapshot()?, None))
}

/// One page of a listing or search.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Products matching the search text and every filter (all pages).
    pub total: u64,
    /// Counts by category, brand and price bucket; each ignores its own filter.
    pub facets: Facets,
}

/// Query of `GET /api/products`; every parameter is optional. Unknown values of `category` and
/// `brand` simply match nothing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Ranked full-text search (name, description, tags, spec values; Chinese and English,
    /// typos in Latin words tolerated), at most 200 characters. Text with no letters or
    /// digits (punctuation, emoji) matches nothing.
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// A category slug (`a-z 0-9 -`, at most 50).
    #[param(pattern = r"^\s*[A-Za-z0-9-]{0,50}\s*$")]
    pub category: Option<String>,
    /// `specs.brand`, any case, at most 100 characters.
    #[param(max_length = 100)]
    pub brand: Option<String>,
    /// Lowest price in minor units (integer >= 0).
    #[param(pattern = r"^\s*[0-9]{0,18}\s*$")]
    pub min_price: Option<String>,
    /// Highest price in minor units (integer >= 0, not below `min_price`).
    #[param(pattern = r"^\s*[0-9]{0,18}\s*$")]
    pub max_price: Option<String>,
    /// `true`: only products with available stock.
    #[param(pattern = r"^\s*(true|false|1|0)?\s*$")]
    pub in_stock: Option<String>,
    /// `relevance` (default with `q`), `newest` (default without), `price_asc`, `price_desc`,
    /// `name` (`price` and `-price` are accepted too).
    #[param(pattern = r"^\s*(relevance|newest|price_asc|price_desc|name|price|-price)?\s*$")]
    pub sort: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(pattern = r"^\s*([1-9]|[1-9][0-9]|100)?\s*$")]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page (at most 512 characters).
    #[param(max_length = 512)]
    pub cursor: Option<String>,
    /// `en` or `zh-CN` (also `zh`, `zh-Hans`, `en-GB`...): the language of names and
    /// descriptions; overrides `Accept-Language`.
    #[param(pattern = r"^\s*(([eE][nN]|[zZ][hH])([-_][A-Za-z0-9_-]{0,32})?)?\s*$")]
    pub lang: Option<String>,
}

/// Query of `GET /api/products/suggest`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuggestParams {
    /// What the shopper typed so far, at most 50 characters; the last word may be unfinished.
    #[param(max_length = 50)]
    pub q: Option<String>,
    /// Suggestions wanted, 1 to 20 (default 8).
    #[param(pattern = r"^\s*([1-9]|1[0-9]|20)?\s*$")]
    pub limit: Option<String>,
    /// As for the listing.
    #[param(pattern = r"^\s*(([eE][nN]|[zZ][hH])([-_][A-Za-z0-9_-]{0,32})?)?\s*$")]
    pub lang: Option<String>,
}

/// One completion of a search.
#[derive(Debug, Serialize, ToSchema)]
pub struct Suggestion {
    pub id: Uuid,
    pub name: String,
    pub category: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Suggestions {
    pub suggestions: Vec<Suggestion>,
}

pub const SUGGEST_DEFAULT_LIMIT: usize = 8;
pub const SUGGEST_MAX_LIMIT: usize = 20;
// A suggestion list asks for twice its length (names repeat across products).
const _: () = assert!(SUGGEST_MAX_LIMIT * 2 <= catalog::index::COMPLETIONS_KEPT);
/// Longest brand filter accepted.
pub const BRAND_MAX_CHARS: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// 3 to 64 of `A-Z a-z 0-9 - _ .`, starting with a letter or digit; stored in upper case.
    #[schema(
        example = "KT-100",
        pattern = r"^\s*[A-Za-z0-9][A-Za-z0-9._-]{2,63}\s*$"
    )]
    pub sku: String,
    /// The base name, in English or Chinese.
    #[schema(
        example = "Steel kettle",
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*\S[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 5000, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    pub description: String,
    /// Name and description in the other language(s): keys `en` or `zh-CN`.
    #[serde(default)]
    #[schema(schema_with = translations_schema)]
    pub translations: BTreeMap<String, TranslationBody>,
    /// A slug: 1 to 50 of `a-z 0-9 -` (stored in lower case).
    #[schema(example = "kitchen", pattern = r"^\s*[A-Za-z0-9-]{1,50}\s*$")]
    pub category: String,
    /// At most 20 tags of at most 40 characters.
    #[serde(default)]
    #[schema(schema_with = tags_schema)]
    pub tags: Vec<String>,
    pub price: Price,
    /// Nested attributes of any shape (see `Specs`).
    #[serde(default = "empty_object")]
    #[schema(value_type = Specs)]
    pub specs: Value,
    #[serde(default)]
    #[schema(max_items = 10)]
    pub images: Vec<Image>,
    /// Units available at creation (default 0).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub initial_stock: i64,
}

/// `translations`: at most one entry per language, keyed `en` or `zh-CN`.
fn translations_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .property_names(Some(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .enum_values(Some(["en", "zh-CN"])),
        ))
        .additional_properties(Some(utoipa::openapi::Ref::from_schema_name(
            "TranslationBody",
        )))
        .build()
}

/// `tags`: at most 20 of 1 to 40 printable characters (kept once, ignoring case).
fn tags_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .max_length(Some(40))
                .pattern(Some(
                    r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*\S[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$",
                )),
        )
        .max_items(Some(20))
        .build()
}

/// The schema of `specs`, as `validation::specs` checks it: an object whose keys are safe
/// MongoDB field names (1 to 64 characters, no `.`, no NUL, no leading `$`) and whose values are
/// any JSON, objects among them checked the same way.
pub struct Specs;

/// A value inside `specs` (recursive through `Specs`).
pub struct SpecValue;

fn schema_from(value: Value) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    // The JSON below is fixed and tested (`specs_schemas_parse`); a plain object is the safe
    // fallback all the same.
    serde_json::from_value(value).unwrap_or_else(|_| {
        utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(
            utoipa::openapi::Object::new(),
        ))
    })
}

fn specs_schema_json() -> Value {
    serde_json::json!({
        "type": "object",
        "description": "Nested attributes of any shape, at most 8 levels deep and 16 KiB as JSON.",
        "propertyNames": {"type": "string", "pattern": "^[^$.\\x00][^.\\x00]{0,63}$"},
        "additionalProperties": {"$ref": "#/components/schemas/SpecValue"}
    })
}

fn spec_value_schema_json() -> Value {
    serde_json::json!({
        "anyOf": [
            {"type": "null"},
            {"type": "string"},
            {"type": "boolean"},
            {"type": "number", "minimum": i64::MIN, "maximum": i64::MAX},
            {"type": "array", "items": {"$ref": "#/components/schemas/SpecValue"}},
            {"$ref": "#/components/schemas/Specs"}
        ]
    })
}

impl utoipa::PartialSchema for Specs {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        schema_from(specs_schema_json())
    }
}

impl utoipa::ToSchema for Specs {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "SpecValue".to_owned(),
            <SpecValue as utoipa::PartialSchema>::schema(),
        ));
    }
}

impl utoipa::PartialSchema for SpecValue {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        schema_from(spec_value_schema_json())
    }
}

impl utoipa::ToSchema for SpecValue {}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Changes to a product; omitted fields stay as they are. The SKU cannot change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    /// The version last read; a stale one is refused with 409.
    pub version: i64,
    #[serde(default, deserialize_with = "web::extract::non_null")]
    #[schema(
        nullable = false,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*\S[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "web::extract::non_null")]
    #[schema(
        nullable = false,
        max_length = 5000,
        pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub description: Option<String>,
    /// Replaces every translation (send `{}` to remove them).
    #[serde(default, deserialize_with = "web::extract::non_null")]
    #[schema(schema_with = translations_schema)]
    pub translations: Option<BTreeMap<String, TranslationBody>>,
    #[serde(default, deserialize_with = "web::extract::non_null")]
    #[schema(nullable = false, pattern = r"^\s*[A-Za-z0-9-]{1,50}\s*$")]
    pub category: Option<String>,
    #[serde(default, deserialize_with = "web::extract::non_null")]
    #[schema(schema_with = tags_schema)]
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "web::extract::non_null")]
    #[schema(nullable = false)]
    pub price: Option<Price>,
    #[serde(default, deserialize_with = "web::extract::non_null")]
    #[schema(value_type = Option<Specs>, nullable = false)]
    pub specs: Option<Value>,
    #[serde(default, deserialize_with = "web::extract::non_null")]
    #[schema(nullable = false, max_items = 10)]
    pub images: Option<Vec<Image>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjustment {
    /// Units to add (positive) or remove (negative), not zero; available stock never goes
    /// below zero.
    #[schema(example = -2, minimum = -1_000_000, maximum = 1_000_000)]
    pub delta: i64,
    #[schema(
        example = "damaged in the warehouse",
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*\S[^\x00-\x1f\x7f-\x9f]*$"
    )]
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

/// The language of the answer: `lang`, else `Accept-Language`.
fn language(
    errors: &mut Vec<FieldError>,
    lang: Option<&str>,
    headers: &HeaderMap,
) -> Option<&'static str> {
    match collect(errors, language::from_param(lang)).flatten() {
        Some(lang) => Some(lang),
        None => headers
            .get(ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok())
            .and_then(language::from_accept_language),
    }
}

/// `Cache-Control: no-cache` asks for matches computed afresh instead of those kept for the
/// same text (the answer is the same either way: the kept matches are those of the current
/// index; the directive is for measuring and for a client that doubts it).
fn freshness(headers: &HeaderMap) -> Freshness {
    let no_cache = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|directive| {
            let name = directive.split('=').next().unwrap_or_default().trim();
            name.eq_ignore_ascii_case("no-cache")
        });
    if no_cache {
        Freshness::Fresh
    } else {
        Freshness::Kept
    }
}

fn read_query<T>(query: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    query.map(|Query(params)| params).map_err(|rejection| {
        Problem::bad_request(format!("cannot read the query: {}", rejection.body_text())).into()
    })
}

/// The catalog, searched, filtered, sorted and paged by cursor, with facet counts. Only active
/// products. Served from this replica's read model.
#[utoipa::path(get, path = "/api/products", tag = "products", params(ListParams, ("Accept-Language" = Option<String>, Header, description = "Preferred languages; the best of en and zh-CN is the answer's language unless `lang` is given"), ("Cache-Control" = Option<String>, Header, description = "`no-cache`: the text's matches are computed afresh instead of taken from those kept for the current index (same answer; for measuring)")),
    responses(
        (status = 200, body = ProductPage),
        (status = 400, body = Problem, description = "The query string cannot be read"),
        (status = 422, body = Problem, description = "A parameter is invalid (too long, out of range, `min_price` above `max_price`, a cursor this service did not hand out); it is named in `errors`"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Response> {
    let params = read_query(params)?;
    let mut errors = Vec::new();
    let text = match search::text(params.q.as_deref()) {
        Some(q) if q.chars().count() > search::MAX_QUERY_CHARS => {
            errors.push(FieldError::new(
                "q",
                format!("must be at most {} characters", search::MAX_QUERY_CHARS),
            ));
            None
        }
        Some(q) => Some(q.to_owned()),
        None => None,
    };
    let category = match params.category.as_deref().filter(|c| !c.trim().is_empty()) {
        Some(category) => collect(&mut errors, validation::category("category", category)),
        None => None,
    };
    let brand = match params
        .brand
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
        Some(brand) if brand.chars().count() > BRAND_MAX_CHARS => {
            errors.push(FieldError::new(
                "brand",
                format!("must be at most {BRAND_MAX_CHARS} characters"),
            ));
            None
        }
        Some(brand) => Some(brand.to_lowercase()),
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
    let sort = collect(
        &mut errors,
        Sort::parse(params.sort.as_deref(), text.is_some()),
    );
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
    let lang = language(&mut errors, params.lang.as_deref(), &headers);
    let (Some(sort), Some(limit), true) = (sort, limit, errors.is_empty()) else {
        return Err(Problem::validation(errors).into());
    };
    let request = catalog::Request {
        text,
        category,
        brand,
        min_price,
        max_price,
        in_stock,
        sort: Some(sort),
        after,
        limit: usize::try_from(limit).unwrap_or(listing::DEFAULT_LIMIT as usize),
        lang,
        freshness: freshness(&headers),
    };
    let page = state.catalog.search(&request)?;
    let items = page
        .items
        .iter()
        .map(|listed| state.views.of(&listed.product, lang))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Json(ProductPageRef {
        items: items.iter().map(AsRef::as_ref).collect(),
        next_cursor: page.next_cursor.as_deref(),
        total: page.total,
        facets: &page.facets,
    })
    .into_response())
}

/// Search as you type: products whose name (or a tag) completes what was typed, best first.
#[utoipa::path(get, path = "/api/products/suggest", tag = "products", params(SuggestParams, ("Accept-Language" = Option<String>, Header, description = "Preferred languages; the best of en and zh-CN is the answer's language unless `lang` is given"), ("Cache-Control" = Option<String>, Header, description = "`no-cache`: the completions are computed afresh instead of taken from those kept for the current index (same answer; for measuring)")),
    responses(
        (status = 200, body = Suggestions, description = "Empty when nothing completes the text, or the text is blank"),
        (status = 400, body = Problem, description = "The query string cannot be read"),
        (status = 422, body = Problem, description = "`q` is longer than 50 characters, `limit` is not 1 to 20, or `lang` is not supported"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn suggest(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<SuggestParams>, QueryRejection>,
) -> ApiResult<Json<Suggestions>> {
    let params = read_query(params)?;
    let mut errors = Vec::new();
    // Not trimmed at the end: a trailing space says the last word is finished.
    let typed = params.q.as_deref().unwrap_or_default().trim_start();
    if typed.chars().count() > search::MAX_SUGGEST_CHARS {
        errors.push(FieldError::new(
            "q",
            format!("must be at most {} characters", search::MAX_SUGGEST_CHARS),
        ));
    }
    let limit = match params
        .limit
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        None => Some(SUGGEST_DEFAULT_LIMIT),
        Some(limit) => match limit.parse::<usize>() {
            Ok(n) if (1..=SUGGEST_MAX_LIMIT).contains(&n) => Some(n),
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    format!("must be an integer between 1 and {SUGGEST_MAX_LIMIT}"),
                ));
                None
            }
        },
    };
    let lang = language(&mut errors, params.lang.as_deref(), &headers);
    let (Some(limit), true) = (limit, errors.is_empty()) else {
        return Err(Problem::validation(errors).into());
    };
    if !search::has_words(typed) {
        return Ok(Json(Suggestions {
            suggestions: Vec::new(),
        }));
    }
    let mut seen = std::collections::HashSet::new();
    let suggestions = state
        .catalog
        .suggest(typed, limit * 2, freshness(&headers))?
        .iter()
        .filter(|listed| seen.insert(listed.name_in(lang).to_owned()))
        .take(limit)
        .map(|listed| Suggestion {
            id: listed.product.id,
            name: listed.name_in(lang).to_owned(),
            category: listed.product.category.clone(),
        })
        .collect();
    Ok(Json(Suggestions { suggestions }))
}

/// Query of `GET /api/products/{id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductParams {
    /// `en` or `zh-CN`; overrides `Accept-Language`.
    #[param(pattern = r"^\s*(([eE][nN]|[zZ][hH])([-_][A-Za-z0-9_-]{0,32})?)?\s*$")]
    pub lang: Option<String>,
}

/// One active product, from this replica's read model.
#[utoipa::path(get, path = "/api/products/{id}", tag = "products",
    params(("id" = Uuid, Path, description = "Product id"), ProductParams, ("Accept-Language" = Option<String>, Header, description = "Preferred languages; the best of en and zh-CN is the answer's language unless `lang` is given")),
    responses(
        (status = 200, body = ProductView),
        (status = 400, body = Problem, description = "The query string cannot be read"),
        (status = 404, body = Problem, description = "No such product, or it was deleted"),
        (status = 422, body = Problem, description = "`lang` is not supported"),
    ))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    params: Result<Query<ProductParams>, QueryRejection>,
) -> ApiResult<Response> {
    let params = read_query(params)?;
    let mut errors = Vec::new();
    let lang = language(&mut errors, params.lang.as_deref(), &headers);
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    let listed = state.catalog.get(&id).ok_or_else(not_found)?;
    let view = state.views.of(&listed.product, lang)?;
    Ok(Json(view.as_ref()).into_response())
}

pub(super) fn not_found() -> Problem {
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
    let Some(draft) = draft(&body, &mut errors) else {
        return Err(Problem::validation(errors).into());
    };
    let product = state.writes.create(draft).await?;
    Ok((StatusCode::CREATED, Json(view(&product)?)))
}

/// The new product `body` describes, or `None` with every problem named in `errors`.
fn draft(body: &NewProduct, errors: &mut Vec<FieldError>) -> Option<ProductDraft> {
    let sku = collect(errors, validation::sku(&body.sku));
    let name = collect(errors, validation::name(&body.name));
    let description = collect(errors, validation::description(&body.description));
    let translations = collect(
        errors,
        validation::translations(&translation_map(&body.translations)),
    );
    let category = collect(errors, validation::category("category", &body.category));
    let tags = collect(errors, validation::tags(&body.tags));
    let price = money(errors, &body.price);
    let specs = collect(errors, validation::specs(&body.specs));
    let images = images(errors, &body.images);
    let initial_stock = collect(errors, stock::initial(body.initial_stock));
    Some(ProductDraft {
        sku: sku?,
        name: name?,
        description: description?,
        translations: translations?,
        category: category?,
        tags: tags?,
        price: price?,
        specs: specs?,
        images: images?,
        initial_stock: initial_stock?,
    })
}

fn translation_map(given: &BTreeMap<String, TranslationBody>) -> BTreeMap<String, Translation> {
    given
        .iter()
        .map(|(lang, t)| {
            (
                lang.clone(),
                Translation {
                    name: t.name.clone(),
                    description: t.description.clone(),
                },
            )
        })
        .collect()
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
    let translations = body
        .translations
        .as_ref()
        .and_then(|v| collect(&mut errors, validation::translations(&translation_map(v))));
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
        && body.translations.is_none()
        && body.category.is_none()
        && body.tags.is_none()
        && body.price.is_none()
        && body.specs.is_none()
        && body.images.is_none();
    if nothing {
        errors.push(FieldError::new(
            "body",
            "send at least one of name, description, translations, category, tags, price, specs, images",
        ));
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    let edits = CatalogEdits {
        name,
        translations,
        description,
        category,
        tags,
        price,
        specs,
        images: new_images,
    };
    let committed = state.writes.update(&id, body.version, edits).await?;
    Ok(Json(view(&committed)?))
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
    state.writes.withdraw(&id).await?;
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
    let committed = state
        .writes
        .adjust_stock(&id, body.delta, &reason, admin.id)
        .await?;
    Ok(Json(view(&committed)?))
}

#[cfg(test)]
mod schema_tests {
    use super::*;

    #[test]
    fn specs_schemas_parse() {
        for value in [specs_schema_json(), spec_value_schema_json()] {
            let parsed: Result<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>, _> =
                serde_json::from_value(value.clone());
            assert!(parsed.is_ok(), "{value}");
        }
    }
}

#[cfg(test)]
pub(super) mod view_tests {
    use super::*;

    /// A product with `translations` as (language, name, description); id 7, version 4.
    pub(in crate::api) fn product(translations: &[(&str, &str, &str)]) -> ProductSnapshot {
        let at = DateTime::parse_from_rfc3339("2026-12-06T10:00:00.123456Z")
            .map(|at| at.with_timezone(&Utc))
            .unwrap_or_default();
        ProductSnapshot {
            id: Uuid::from_u128(7),
            sku: "KET-1".into(),
            name: "不锈钢 \"水壶\"\n".into(),
            description: "1.7 升，带 <b>自动断电</b>".into(),
            translations: translations
                .iter()
                .map(|(lang, name, description)| {
                    (
                        (*lang).to_owned(),
                        Translation {
                            name: (*name).to_owned(),
                            description: (*description).to_owned(),
                        },
                    )
                })
                .collect(),
            category: "kitchen".into(),
            tags: vec!["kettle".into(), "水壶".into()],
            price: Money {
                amount: 2_999,
                currency: "CNY".into(),
            },
            specs: serde_json::json!({"brand": "Bosch", "size": {"litres": 1.7}, "colours": ["red", null]}),
            images: vec![ProductImage {
                url: "https://img.example.com/k.jpg".into(),
                alt: String::new(),
            }],
            stock: StockLevels {
                available: 3,
                reserved: 2,
                sold: 1,
            },
            active: true,
            version: 4,
            created_at: at,
            updated_at: at,
        }
    }

    /// A product is shown in the asked language only where it has a translation into it; the
    /// view then carries that language's texts and says so, else the base texts and no `lang`.
    #[test]
    fn a_product_is_shown_in_the_asked_language_only_where_it_has_it() {
        let product = product(&[("en", "Kettle", "switches itself off")]);
        assert_eq!(language::shown(&product, Some("en")).lang, Some("en"));
        assert_eq!(language::shown(&product, Some("zh-CN")).lang, None);
        assert_eq!(language::shown(&product, None).lang, None);
        let english = ProductViewRef::of(&product, Some("en"));
        assert_eq!((english.name, english.lang), ("Kettle", Some("en")));
        let base = ProductViewRef::of(&product, Some("zh-CN"));
        assert_eq!((base.name, base.lang), (product.name.as_str(), None));
    }

    /// The borrowed view is what clients have always been sent: the same bytes as the owned
    /// view, with and without translations, in the asked language or not.
    #[test]
    fn the_borrowed_view_writes_the_same_json_as_the_owned_one() -> anyhow::Result<()> {
        let products = [
            product(&[]),
            product(&[("en", "Kettle", "1.7 l, switches itself off")]),
            product(&[("en", "Kettle", ""), ("zh-CN", "水壶", "烧水")]),
        ];
        for product in &products {
            for lang in [None, Some("en"), Some("zh-CN")] {
                let owned = serde_json::to_string(&ProductView::of(product, lang))?;
                let borrowed = serde_json::to_string(&ProductViewRef::of(product, lang))?;
                assert_eq!(borrowed, owned, "lang {lang:?}");
            }
        }
        Ok(())
    }

    /// A page made of kept views ([`super::super::views`]) is what clients have always been
    /// sent, whether the views were written for it or kept from an earlier answer.
    #[test]
    fn the_page_of_kept_views_writes_the_same_json_as_the_owned_one() -> anyhow::Result<()> {
        // Two products (views are kept by id and version, like the read model's snapshots).
        let mut translated = product(&[("en", "Kettle", "")]);
        translated.id = Uuid::from_u128(8);
        let products = [product(&[]), translated];
        let views = super::super::views::RenderedViews::default();
        let facets = Facets {
            category: Vec::new(),
            brand: Vec::new(),
            price: Vec::new(),
        };
        for next_cursor in [None, Some("eyJzIjoibmV3ZXN0In0")] {
            let owned = ProductPage {
                items: products.iter().map(|p| ProductView::of(p, None)).collect(),
                next_cursor: next_cursor.map(str::to_owned),
                total: 41,
                facets: facets.clone(),
            };
            let kept = products
                .iter()
                .map(|p| views.of(p, None))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let borrowed = ProductPageRef {
                items: kept.iter().map(AsRef::as_ref).collect(),
                next_cursor,
                total: 41,
                facets: &facets,
            };
            assert_eq!(
                serde_json::to_string(&borrowed)?,
                serde_json::to_string(&owned)?
            );
        }
        Ok(())
    }
}
