//! API5:2023 Broken function-level authorization. The admin operations are enumerated from
//! the services' own OpenAPI documents, not listed here: every operation under `/api/admin/`
//! and every operation that documents a 403. So a new admin route is covered as soon as it is
//! documented (and API9 proves every routed path is documented). Each is called anonymously
//! (401 at the latest) and as a customer (403), with a path id that exists where one is
//! needed, so "not found" cannot hide a missing role check.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Owasp, expect_problem};

/// `(method, path template)` of every admin operation in the services' OpenAPI documents.
pub async fn admin_operations(ctx: &Owasp<'_>) -> anyhow::Result<Vec<(Method, String)>> {
    let mut found = Vec::new();
    for (_, document) in super::api9_inventory::openapi_documents(ctx).await? {
        let Some(paths) = document["paths"].as_object() else {
            continue;
        };
        for (path, operations) in paths {
            let Some(operations) = operations.as_object() else {
                continue;
            };
            for (method, operation) in operations {
                let Ok(method) = method.to_uppercase().parse::<Method>() else {
                    continue;
                };
                let forbidden = operation["responses"].get("403").is_some();
                if path.starts_with("/api/admin/") || forbidden {
                    found.push((method, path.clone()));
                }
            }
        }
    }
    found.sort_by(|a, b| (a.1.as_str(), a.0.as_str()).cmp(&(b.1.as_str(), b.0.as_str())));
    found.dedup();
    Ok(found)
}

pub async fn run(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let customer = ctx.account().await?;
    let product = ctx.product(3).await?;
    let operations = admin_operations(ctx).await?;
    // The ones known today must be among them (a document that lost its 403 would hide one).
    for expected in [
        (Method::POST, "/api/products"),
        (Method::PATCH, "/api/products/{id}"),
        (Method::DELETE, "/api/products/{id}"),
        (Method::POST, "/api/products/{id}/stock"),
        (Method::GET, "/api/admin/orders"),
        (Method::GET, "/api/admin/approvals"),
        (Method::POST, "/api/admin/approvals/{task}"),
    ] {
        anyhow::ensure!(
            operations
                .iter()
                .any(|(method, path)| *method == expected.0 && path == expected.1),
            "{} {} is not among the documented admin operations {operations:?}",
            expected.0,
            expected.1
        );
    }
    for (method, template) in &operations {
        let path = template
            .replace("{id}", &product.to_string())
            .replace("{task}", &uuid::Uuid::new_v4().to_string());
        let body: Value = json!({});
        let anonymous = ctx.call(method.clone(), &path, None, &body).await?;
        expect_problem(
            &anonymous,
            StatusCode::UNAUTHORIZED,
            &format!("{method} {path} anonymously"),
        )?;
        let as_customer = ctx
            .call(method.clone(), &path, Some(&customer.user.token), &body)
            .await?;
        expect_problem(
            &as_customer,
            StatusCode::FORBIDDEN,
            &format!("{method} {path} as a customer"),
        )?;
    }
    // And the product is untouched.
    let stock = ctx.api.stock(product).await?;
    anyhow::ensure!(
        stock == (3, 0, 0),
        "stock after refused admin calls: {stock:?}"
    );
    Ok(())
}
