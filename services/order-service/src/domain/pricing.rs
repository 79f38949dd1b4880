//! Pricing a basket from the product replica: never from the client.
//!
//! A basket is refused as a whole (422, every problem named by field) when it is empty or too
//! long, a quantity is out of bounds, a product is unknown or withdrawn, the currencies differ,
//! or the total would overflow. Repeated products are kept as separate lines (the customer sees
//! what they sent); the bound on quantity applies to each product's sum, because that is what
//! is reserved.

use std::collections::HashMap;

use contracts::product::Money;
use uuid::Uuid;
use web::FieldError;

/// Most lines an order may have.
pub const MAX_LINES: usize = 50;
/// Most units of one product in one order.
pub const MAX_QUANTITY: i64 = 100;

/// A line as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// What the replica knows of a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub name: String,
    pub price: Money,
    pub active: bool,
}

/// A priced line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedBasket {
    pub lines: Vec<PricedLine>,
    pub total: Money,
}

/// Prices `requested` with `catalog` (the replica's entries for the requested ids; missing ones
/// are unknown products).
pub fn price(
    requested: &[Requested],
    catalog: &HashMap<Uuid, CatalogEntry>,
) -> Result<PricedBasket, Vec<FieldError>> {
    let mut errors = Vec::new();
    if requested.is_empty() {
        errors.push(FieldError::new("items", "an order needs at least one item"));
    }
    if requested.len() > MAX_LINES {
        errors.push(FieldError::new(
            "items",
            format!("an order may have at most {MAX_LINES} lines"),
        ));
    }
    let mut per_product: HashMap<Uuid, i64> = HashMap::new();
    for (index, line) in requested.iter().enumerate() {
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            errors.push(FieldError::new(
                format!("items[{index}].quantity"),
                format!("must be between 1 and {MAX_QUANTITY}"),
            ));
            continue;
        }
        let sum = per_product.entry(line.product_id).or_default();
        *sum += line.quantity;
        if *sum > MAX_QUANTITY {
            errors.push(FieldError::new(
                format!("items[{index}].quantity"),
                format!("at most {MAX_QUANTITY} units of one product per order"),
            ));
        }
    }

    let mut lines = Vec::with_capacity(requested.len());
    let mut currency: Option<&str> = None;
    let mut total: i64 = 0;
    for (index, line) in requested.iter().enumerate() {
        let field = format!("items[{index}].product_id");
        let Some(entry) = catalog.get(&line.product_id) else {
            errors.push(FieldError::new(field, "no such product"));
            continue;
        };
        if !entry.active {
            errors.push(FieldError::new(field, "this product is no longer sold"));
            continue;
        }
        match currency {
            None => currency = Some(&entry.price.currency),
            Some(first) if first != entry.price.currency => {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "priced in {}, but the order is in {first}; one order has one currency",
                        entry.price.currency
                    ),
                ));
                continue;
            }
            Some(_) => {}
        }
        let line_total = entry.price.amount.checked_mul(line.quantity);
        match line_total.and_then(|line_total| total.checked_add(line_total)) {
            Some(sum) if line_total.is_some() => {
                total = sum;
                lines.push(PricedLine {
                    product_id: line.product_id,
                    name: entry.name.clone(),
                    quantity: line.quantity,
                    unit_price: entry.price.clone(),
                    line_total: line_total.unwrap_or_default(),
                });
            }
            _ => errors.push(FieldError::new(
                format!("items[{index}].quantity"),
                "the order total is too large",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PricedBasket {
        lines,
        total: Money {
            amount: total,
            currency: currency.unwrap_or_default().to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, amount: i64, currency: &str) -> CatalogEntry {
        CatalogEntry {
            name: name.into(),
            price: Money {
                amount,
                currency: currency.into(),
            },
            active: true,
        }
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn line(n: u128, quantity: i64) -> Requested {
        Requested {
            product_id: id(n),
            quantity,
        }
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|error| error.field.as_str()).collect()
    }

    fn catalog() -> HashMap<Uuid, CatalogEntry> {
        HashMap::from([
            (id(1), entry("Kettle", 2_999, "EUR")),
            (id(2), entry("Teapot", 1_550, "EUR")),
            (id(3), entry("Mug", 700, "USD")),
            (
                id(4),
                CatalogEntry {
                    active: false,
                    ..entry("Old", 100, "EUR")
                },
            ),
            (id(5), entry("Gold", i64::MAX / 2, "EUR")),
        ])
    }

    #[test]
    fn prices_come_from_the_catalog_and_sum_per_line() -> Result<(), Vec<FieldError>> {
        let basket = price(&[line(1, 2), line(2, 1)], &catalog())?;
        assert_eq!(basket.total.amount, 2 * 2_999 + 1_550);
        assert_eq!(basket.total.currency, "EUR");
        assert_eq!(basket.lines[0].line_total, 5_998);
        assert_eq!(basket.lines[0].name, "Kettle");
        assert_eq!(basket.lines[1].unit_price.amount, 1_550);
        Ok(())
    }

    #[test]
    fn unknown_and_withdrawn_products_are_named() {
        let errors = price(&[line(9, 1), line(4, 1)], &catalog())
            .err()
            .unwrap_or_default();
        assert_eq!(
            fields(&errors),
            ["items[0].product_id", "items[1].product_id"]
        );
    }

    #[test]
    fn mixed_currencies_are_refused() {
        let errors = price(&[line(1, 1), line(3, 1)], &catalog())
            .err()
            .unwrap_or_default();
        assert_eq!(fields(&errors), ["items[1].product_id"]);
        assert!(errors[0].message.contains("one currency"));
    }

    #[test]
    fn quantities_are_bounded_per_line_and_per_product() {
        let errors = price(&[line(1, 0), line(2, -3), line(2, 101)], &catalog())
            .err()
            .unwrap_or_default();
        assert_eq!(
            fields(&errors),
            [
                "items[0].quantity",
                "items[1].quantity",
                "items[2].quantity"
            ]
        );
        let repeated = price(&[line(1, 60), line(1, 41)], &catalog())
            .err()
            .unwrap_or_default();
        assert_eq!(fields(&repeated), ["items[1].quantity"]);
        assert!(price(&[line(1, 60), line(1, 40)], &catalog()).is_ok());
    }

    #[test]
    fn empty_and_overlong_baskets_are_refused() {
        assert_eq!(
            fields(&price(&[], &catalog()).err().unwrap_or_default()),
            ["items"]
        );
        let long: Vec<_> = (0..51).map(|_| line(1, 1)).collect();
        let errors = price(&long, &catalog()).err().unwrap_or_default();
        assert!(fields(&errors).contains(&"items"));
    }

    #[test]
    fn an_overflowing_total_is_a_validation_error_not_a_panic() {
        let errors = price(&[line(5, 3)], &catalog()).err().unwrap_or_default();
        assert_eq!(fields(&errors), ["items[0].quantity"]);
    }
}
