//! API9:2023 Improper inventory management. The gateway's route table is the inventory of
//! what is exposed, and the services' OpenAPI documents are the inventory of what is
//! documented; they must agree: every prefix the gateway routes holds documented operations,
//! every documented `/api` path is routed, and undocumented paths under every prefix (old
//! versions, internal and debug names) answer 404 problem documents, also for an admin.

use reqwest::StatusCode;
use serde_json::Value;

use super::{Owasp, expect_problem};

/// Every service's OpenAPI document, fetched from its first instance.
pub async fn openapi_documents(ctx: &Owasp<'_>) -> anyhow::Result<Vec<(String, Value)>> {
    let mut documents = Vec::new();
    for (service, urls) in &ctx.platform.urls {
        // The gateway and the simulators publish no document of the platform's API.
        if matches!(service.as_str(), "gateway" | "psp-sim" | "sms-sim") {
            continue;
        }
        let url = urls
            .first()
            .ok_or_else(|| anyhow::anyhow!("{service} has no instance"))?;
        let document: Value = ctx
            .api
            .client
            .get(format!("{url}/openapi.json"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        documents.push((service.clone(), document));
    }
    documents.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(documents)
}

pub async fn run(ctx: &Owasp<'_>) -> anyhow::Result<()> {
    let config = gateway::config::Config::default();
    let documents = openapi_documents(ctx).await?;
    let documented: Vec<(String, String)> = documents
        .iter()
        .flat_map(|(service, document)| {
            document["paths"]
                .as_object()
                .into_iter()
                .flat_map(|paths| paths.keys())
                .map(move |path| (service.clone(), path.clone()))
        })
        .collect();
    let mut problems = Vec::new();
    for route in &config.routes {
        let served = documented.iter().any(|(service, path)| {
            *service == route.service && gateway::routes::prefix_matches(&route.prefix, path)
        });
        if !served {
            problems.push(format!(
                "the gateway routes {} to {}, whose OpenAPI documents nothing there",
                route.prefix, route.service
            ));
        }
    }
    for (service, path) in &documented {
        if !(path.starts_with("/api/") || path.starts_with("/.well-known/")) {
            continue;
        }
        let table = gateway::routes::RouteTable::new(
            config
                .routes
                .iter()
                .enumerate()
                .map(|(pool, route)| gateway::routes::Route {
                    prefix: route.prefix.as_str().into(),
                    pool,
                    auth: route.auth,
                    limit: route.limit,
                    timeout: std::time::Duration::from_secs(1),
                })
                .collect(),
        );
        match table.resolve(path) {
            Some(route) if config.routes[route.pool].service == *service => {}
            other => problems.push(format!(
                "{service} documents {path}, which the gateway routes to {:?}",
                other.map(|route| config.routes[route.pool].service.clone())
            )),
        }
    }
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));

    // Undocumented paths under every routed prefix, and outside them: 404, even for an admin.
    let mut probes: Vec<String> = config
        .routes
        .iter()
        .flat_map(|route| {
            let prefix = route.prefix.trim_end_matches('/');
            ["internal", "debug", "v0", "_all", "export"]
                .into_iter()
                .map(move |name| format!("{prefix}/{name}/{}", uuid::Uuid::new_v4()))
        })
        .collect();
    probes.extend(
        [
            "/api/v1/orders",
            "/api/v2/users",
            "/api/internal/users",
            "/api/users/all",
            "/api/payments/export/all",
            "/api/unknown",
            "/unknown",
        ]
        .map(String::from),
    );
    for path in &probes {
        let reply = ctx.get(path, Some(&ctx.admin)).await?;
        anyhow::ensure!(
            reply.status == StatusCode::NOT_FOUND || reply.status == StatusCode::METHOD_NOT_ALLOWED,
            "GET {path} answers: {reply:?}"
        );
        expect_problem(&reply, reply.status, &format!("GET {path}"))?;
    }
    Ok(())
}
