//! How the catalog is listed: sort orders, page sizes and opaque keyset cursors.
//!
//! Pages are cut by key, not by offset: a cursor holds the sort key and id of the last item
//! shown, and the next page starts strictly after that pair. Inserts and deletes elsewhere in
//! the list therefore never shift a page (no item shown twice, none skipped), and every page
//! costs the same however deep the client reads. The id breaks ties, so the order is total.
//! A relevance cursor holds the score, which moves when the catalog changes between pages: such a
//! page may then repeat or skip an item near its edge (the listing orders have no such window).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use web::FieldError;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// The orders a listing can be sorted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Best text match first (BM25); only with a search text.
    Relevance,
    /// Newest first (ids are UUID v7, so id order is creation order).
    Newest,
    /// Cheapest first.
    Price,
    /// Most expensive first.
    PriceDesc,
    /// By name, A to Z (byte order).
    Name,
}

impl Sort {
    pub const ACCEPTED: &'static str =
        "relevance, price_asc, price_desc, newest, name (price and -price still work)";

    /// `searching`: whether the request has a search text, which makes relevance the default
    /// (without one every product matches equally, so relevance means newest).
    pub fn parse(value: Option<&str>, searching: bool) -> Result<Self, FieldError> {
        match value.map(str::trim) {
            None | Some("") if searching => Ok(Sort::Relevance),
            None | Some("") | Some("newest") => Ok(Sort::Newest),
            Some("relevance") if searching => Ok(Sort::Relevance),
            Some("relevance") => Ok(Sort::Newest),
            Some("price" | "price_asc") => Ok(Sort::Price),
            Some("-price" | "price_desc") => Ok(Sort::PriceDesc),
            Some("name") => Ok(Sort::Name),
            Some(_) => Err(FieldError::new(
                "sort",
                format!("must be one of {}", Self::ACCEPTED),
            )),
        }
    }

    /// Whether the listing runs from high to low keys.
    pub fn descending(self) -> bool {
        matches!(self, Sort::Relevance | Sort::Newest | Sort::PriceDesc)
    }
}

/// The page size: `limit` from the query, bounded.
pub fn limit(value: Option<&str>) -> Result<i64, FieldError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_LIMIT);
    };
    match value.parse::<i64>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(FieldError::new(
            "limit",
            format!("must be an integer between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// The sort key of the last item of a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortKey {
    Amount(i64),
    Text(String),
    /// A relevance score (JSON always writes it with a fraction or exponent, so it never reads
    /// back as an amount).
    Score(f64),
}

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub sort: Sort,
    /// Absent for [`Sort::Newest`], whose key is the id itself.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SortKey>,
    pub id: Uuid,
}

impl Cursor {
    /// The opaque token handed to clients: base64url (no padding) of a small JSON object.
    pub fn encode(&self) -> String {
        // A struct of an enum, an optional number or string and a UUID always serialises.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a token back, refusing anything this service did not hand out for `sort`.
    pub fn decode(token: &str, sort: Sort) -> Result<Self, FieldError> {
        let invalid = || FieldError::new("cursor", "is not a cursor from a previous page");
        if token.len() > 512 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| invalid())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        let key_fits = matches!(
            (cursor.sort, &cursor.key),
            (Sort::Newest, None)
                | (Sort::Price | Sort::PriceDesc, Some(SortKey::Amount(_)))
                | (Sort::Name, Some(SortKey::Text(_)))
        ) || matches!((cursor.sort, &cursor.key), (Sort::Relevance, Some(SortKey::Score(score))) if score.is_finite());
        if !key_fits {
            return Err(invalid());
        }
        if cursor.sort != sort {
            return Err(FieldError::new(
                "cursor",
                "belongs to a listing with another sort order",
            ));
        }
        Ok(cursor)
    }
}

/// An optional non-negative integer query parameter such as `min_price`.
pub fn amount(field: &str, value: Option<&str>) -> Result<Option<i64>, FieldError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(value) => match value.parse::<i64>() {
            Ok(amount) if amount >= 0 => Ok(Some(amount)),
            _ => Err(FieldError::new(
                field,
                "must be a non-negative integer amount in minor units",
            )),
        },
    }
}

/// An optional boolean query parameter (`true`/`false`, also `1`/`0`).
pub fn flag(field: &str, value: Option<&str>) -> Result<Option<bool>, FieldError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(_) => Err(FieldError::new(field, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_parse_with_newest_as_default() {
        assert_eq!(Sort::parse(None, false).ok(), Some(Sort::Newest));
        assert_eq!(Sort::parse(None, true).ok(), Some(Sort::Relevance));
        assert_eq!(
            Sort::parse(Some("relevance"), false).ok(),
            Some(Sort::Newest)
        );
        assert_eq!(
            Sort::parse(Some("-price"), false).ok(),
            Some(Sort::PriceDesc)
        );
        assert_eq!(
            Sort::parse(Some("price_desc"), true).ok(),
            Some(Sort::PriceDesc)
        );
        assert_eq!(Sort::parse(Some("price_asc"), true).ok(), Some(Sort::Price));
        assert_eq!(Sort::parse(Some("name"), false).ok(), Some(Sort::Name));
        assert_eq!(
            Sort::parse(Some("rating"), false)
                .err()
                .map(|e| e.field)
                .as_deref(),
            Some("sort")
        );
    }

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(limit(Some("100")).ok(), Some(100));
        for bad in ["0", "101", "-1", "ten", "1.5"] {
            assert_eq!(
                limit(Some(bad)).err().map(|e| e.field).as_deref(),
                Some("limit"),
                "{bad}"
            );
        }
    }

    #[test]
    fn cursors_round_trip_and_are_url_safe() {
        let cursor = Cursor {
            sort: Sort::Name,
            key: Some(SortKey::Text("Kettle / Ä?&".into())),
            id: Uuid::now_v7(),
        };
        let token = cursor.encode();
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(Cursor::decode(&token, Sort::Name).ok(), Some(cursor));
        let price = Cursor {
            sort: Sort::Price,
            key: Some(SortKey::Amount(1999)),
            id: Uuid::nil(),
        };
        assert_eq!(
            Cursor::decode(&price.encode(), Sort::Price).ok(),
            Some(price)
        );
        for score in [2.0, 0.125, 13.75] {
            let relevance = Cursor {
                sort: Sort::Relevance,
                key: Some(SortKey::Score(score)),
                id: Uuid::nil(),
            };
            assert_eq!(
                Cursor::decode(&relevance.encode(), Sort::Relevance).ok(),
                Some(relevance)
            );
        }
    }

    #[test]
    fn garbage_and_foreign_cursors_are_refused_naming_the_cursor() {
        for bad in ["", "garbage!", "bm90IGpzb24", &"A".repeat(600)] {
            assert_eq!(
                Cursor::decode(bad, Sort::Newest)
                    .err()
                    .map(|e| e.field)
                    .as_deref(),
                Some("cursor"),
                "{bad}"
            );
        }
        let price = Cursor {
            sort: Sort::Price,
            key: Some(SortKey::Amount(5)),
            id: Uuid::nil(),
        };
        assert!(Cursor::decode(&price.encode(), Sort::Name).is_err());
        let mismatched = Cursor {
            sort: Sort::Name,
            key: Some(SortKey::Amount(5)),
            id: Uuid::nil(),
        };
        assert!(Cursor::decode(&mismatched.encode(), Sort::Name).is_err());
    }

    #[test]
    fn amounts_and_flags_name_their_field() {
        assert_eq!(amount("min_price", Some("100")).ok(), Some(Some(100)));
        assert!(amount("min_price", Some("-1")).is_err());
        assert_eq!(flag("in_stock", Some("true")).ok(), Some(Some(true)));
        assert_eq!(
            flag("in_stock", Some("yes"))
                .err()
                .map(|e| e.field)
                .as_deref(),
            Some("in_stock")
        );
    }
}
