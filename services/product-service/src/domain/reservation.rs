//! Reservation rules that need no database: which lines an order asks for.

use std::collections::BTreeMap;

use contracts::inventory::StockLine;
use contracts::order::OrderItem;

/// The most units one line may ask for (as for a stock adjustment).
pub const MAX_QUANTITY: i64 = super::stock::MAX_DELTA;
/// The most distinct products one order may hold.
pub const MAX_LINES: usize = 100;

/// The stock lines of an order: one per product (repeated products summed), in product id
/// order, each quantity 1 to [`MAX_QUANTITY`]. An error describes an order that can never be
/// reserved as sent (the caller dead-letters it).
pub fn lines(items: &[OrderItem]) -> Result<Vec<StockLine>, String> {
    if items.is_empty() {
        return Err("the order has no items".into());
    }
    let mut merged = BTreeMap::new();
    for item in items {
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(format!(
                "quantity {} of product {} is not between 1 and {MAX_QUANTITY}",
                item.quantity, item.product_id
            ));
        }
        let total: &mut i64 = merged.entry(item.product_id).or_default();
        *total += item.quantity;
        if *total > MAX_QUANTITY {
            return Err(format!(
                "product {} is ordered more than {MAX_QUANTITY} times",
                item.product_id
            ));
        }
    }
    if merged.len() > MAX_LINES {
        return Err(format!("the order has more than {MAX_LINES} products"));
    }
    Ok(merged
        .into_iter()
        .map(|(product_id, quantity)| StockLine {
            product_id,
            quantity,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use contracts::product::Money;
    use uuid::Uuid;

    use super::*;

    fn item(product: u128, quantity: i64) -> OrderItem {
        OrderItem {
            product_id: Uuid::from_u128(product),
            name: String::new(),
            quantity,
            unit_price: Money {
                amount: 100,
                currency: "EUR".into(),
            },
        }
    }

    #[test]
    fn repeated_products_become_one_line_in_product_order() {
        let found = lines(&[item(2, 1), item(1, 3), item(2, 4)]);
        let expected = vec![
            StockLine {
                product_id: Uuid::from_u128(1),
                quantity: 3,
            },
            StockLine {
                product_id: Uuid::from_u128(2),
                quantity: 5,
            },
        ];
        assert_eq!(found, Ok(expected));
    }

    #[test]
    fn empty_orders_and_non_positive_or_huge_quantities_are_refused() {
        assert!(lines(&[]).is_err());
        assert!(lines(&[item(1, 0)]).is_err());
        assert!(lines(&[item(1, -2)]).is_err());
        assert!(lines(&[item(1, MAX_QUANTITY), item(1, 1)]).is_err());
    }
}
