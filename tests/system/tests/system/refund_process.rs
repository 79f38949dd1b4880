//! The `refund` process under escalation and failure, on a platform of its own with a private
//! workflow engine (so the engine can be stopped, and the repository's current models run
//! whatever the shared engine was built from), a private MongoDB-wire server, and a payment
//! provider stand-in that can hold refund answers:
//!
//! 1. escalation with short timers: a request nobody decides brings the admins a reminder
//!    mail, then is rejected with the reason `approval_timeout`;
//! 2. payment-service killed with SIGKILL while it holds a `refund-payment` task (the
//!    provider refunded, its answer held back), then restarted: the task runs again, the
//!    provider replays its refund, exactly one refund, the process completes;
//! 3. the engine stopped for 30 s: routes that need it answer 503 problem with Retry-After,
//!    others keep working, and afterwards the interrupted refund completes and a retried
//!    request goes through.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use crate::api::{Api, GOOD_CARD, Reply, User, eventually};
use crate::platform::{ADMIN_EMAIL, Deps, Options, Platform};
use crate::provider_relay::relay;

/// Reminder and rejection of an undecided approval on this platform (ISO 8601).
const APPROVAL_REMINDER: &str = "PT3S";
const APPROVAL_TIMEOUT: &str = "PT20S";
/// How long the engine stays away in the outage scenario.
const ENGINE_AWAY: Duration = Duration::from_secs(30);
/// Room for a lock held by a killed worker to expire (30 s) and the step to run again.
const PATIENCE: Duration = Duration::from_secs(180);

/// One refund call the provider stand-in saw, with psp-sim's answer.
#[derive(Debug, Clone)]
struct RefundCall {
    key: String,
    charge: String,
    status: u16,
    refund_id: Option<String>,
}

#[derive(Default)]
struct ProviderState {
    upstream: std::sync::OnceLock<String>,
    client: reqwest::Client,
    calls: Mutex<Vec<RefundCall>>,
    /// While true, refund answers are held back (after psp-sim refunded).
    hold: Option<watch::Sender<bool>>,
}

/// psp-sim behind a stand-in that forwards every call and can hold the answers to refunds.
struct Provider {
    url: String,
    state: Arc<ProviderState>,
}

impl Provider {
    async fn start() -> anyhow::Result<Self> {
        let (hold, _) = watch::channel(false);
        let state = Arc::new(ProviderState {
            hold: Some(hold),
            ..ProviderState::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let router = Router::new().fallback(forward).with_state(state.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("provider stand-in stopped: {error}");
            }
        });
        Ok(Self { url, state })
    }

    fn forward_to(&self, psp_sim: &str) {
        let _ = self.state.upstream.set(psp_sim.to_owned());
    }

    fn hold(&self, on: bool) {
        if let Some(hold) = &self.state.hold {
            hold.send_replace(on);
        }
    }

    fn calls_for(&self, charge: &str) -> Vec<RefundCall> {
        self.state
            .calls
            .lock()
            .map(|calls| {
                calls
                    .iter()
                    .filter(|c| c.charge == charge)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn forward(
    State(state): State<Arc<ProviderState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(upstream) = state.upstream.get() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let is_refund = method == Method::POST && uri.path() == "/v1/refunds";
    let charge = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|body| body["charge"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let Some(answer) = relay(&state.client, upstream, method, &uri, &headers, body).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    if is_refund {
        let refund_id = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|body| body["id"].as_str().map(str::to_owned));
        let key = headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if let Ok(mut calls) = state.calls.lock() {
            calls.push(RefundCall {
                key,
                charge,
                status: answer.status.as_u16(),
                refund_id,
            });
        }
        // The provider has refunded; its answer waits until the test lets it go (the caller
        // may be killed meanwhile, as in the scenario).
        if let Some(hold) = &state.hold {
            let mut held = hold.subscribe();
            let _ = held.wait_for(|on| !*on).await;
        }
    }
    answer.into_response()
}

/// Deploys the repository's models to `engine` (deploy-changed-only).
async fn deploy_models(engine: &str) -> anyhow::Result<()> {
    let client = workflow::EngineClient::new(engine)?;
    client
        .deploy(
            "ferroshop-models-under-test",
            vec![
                (
                    "refund.bpmn".into(),
                    include_bytes!("../../../../workflow/models/refund.bpmn").to_vec(),
                ),
                (
                    "refund-approval.dmn".into(),
                    include_bytes!("../../../../workflow/models/refund-approval.dmn").to_vec(),
                ),
                (
                    "order-risk.dmn".into(),
                    include_bytes!("../../../../workflow/models/order-risk.dmn").to_vec(),
                ),
                (
                    "order-review.bpmn".into(),
                    include_bytes!("../../../../workflow/models/order-review.bpmn").to_vec(),
                ),
            ],
            true,
        )
        .await?;
    Ok(())
}

struct Ctx {
    api: Api,
    admin: String,
}

impl Ctx {
    /// A new customer's order of one product, paid.
    async fn paid_order(&self, amount: i64) -> anyhow::Result<(User, Uuid)> {
        let (product, _) = self.api.product(&self.admin, 5, amount).await?;
        let user = self.api.customer().await?;
        let order = self.api.placed(&user, &[(product, 1)]).await?;
        self.api
            .wait_for_status(&user, order, "AWAITING_PAYMENT")
            .await?;
        let reply = self
            .api
            .pay(&user, order, GOOD_CARD, &Uuid::new_v4().to_string(), None)
            .await?;
        anyhow::ensure!(reply.status.is_success(), "pay: {reply:?}");
        self.api.wait_for_status(&user, order, "PAID").await?;
        Ok((user, order))
    }

    async fn request_refund(
        &self,
        user: &User,
        order: Uuid,
        reason: &str,
    ) -> anyhow::Result<Reply> {
        self.api
            .send(
                self.api
                    .client
                    .post(
                        self.api
                            .url(&format!("/api/orders/{order}/refund-requests")),
                    )
                    .bearer_auth(&user.token)
                    .json(&json!({ "reason": reason })),
            )
            .await
    }

    async fn refund_requests(&self, user: &User, order: Uuid) -> anyhow::Result<Reply> {
        self.api
            .send(
                self.api
                    .client
                    .get(
                        self.api
                            .url(&format!("/api/orders/{order}/refund-requests")),
                    )
                    .bearer_auth(&user.token),
            )
            .await
    }

    /// Waits until the order's latest request is `status`; returns its steps.
    async fn wait_for_request(
        &self,
        user: &User,
        order: Uuid,
        status: &str,
    ) -> anyhow::Result<Vec<String>> {
        self.wait_for_request_step(user, order, status, None).await
    }

    /// As [`Ctx::wait_for_request`], and also until the process history shows `step`: the
    /// request's status is written by a step (`mark-refunded`) before the engine records the
    /// process reaching its end event, so a read in between sees the status without the end.
    async fn wait_for_request_step(
        &self,
        user: &User,
        order: Uuid,
        status: &str,
        step: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        let steps = Arc::new(Mutex::new(Vec::new()));
        let slot = steps.clone();
        eventually(PATIENCE, move || {
            let slot = slot.clone();
            let reply = self.refund_requests(user, order);
            async move {
                let reply = reply.await?;
                let request = &reply.body["items"][0];
                anyhow::ensure!(
                    request["status"] == status,
                    "waiting for {status}: {reply:?}"
                );
                let seen: Vec<String> = request["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|step| step["activity"].as_str().map(str::to_owned))
                    .collect();
                if let Some(step) = step {
                    anyhow::ensure!(
                        seen.iter().any(|s| s == step),
                        "waiting for step {step}: {seen:?}"
                    );
                }
                if let Ok(mut slot) = slot.lock() {
                    *slot = seen;
                }
                Ok(())
            }
        })
        .await?;
        let steps = steps.lock().map(|s| s.clone()).unwrap_or_default();
        Ok(steps)
    }

    /// The provider's one charge of `order`.
    async fn charge(&self, order: Uuid) -> anyhow::Result<Value> {
        let charges = self.api.provider_charges(order).await?;
        anyhow::ensure!(charges.len() == 1, "charges of {order}: {charges:?}");
        Ok(charges[0].clone())
    }

    /// Waits until the stand-in has seen (and holds) a refund of `order`'s charge.
    async fn wait_for_held_refund(
        &self,
        provider: &Provider,
        order: Uuid,
    ) -> anyhow::Result<String> {
        let charge = self.charge(order).await?["id"]
            .as_str()
            .context("a charge without id")?
            .to_owned();
        eventually(PATIENCE, || async {
            anyhow::ensure!(
                !provider.calls_for(&charge).is_empty(),
                "no refund of {charge} yet"
            );
            Ok(())
        })
        .await?;
        Ok(charge)
    }
}

/// Exactly one refund at the provider for `charge`: every answer the same refund, the charge
/// refunded in full once.
async fn refunded_once(
    ctx: &Ctx,
    provider: &Provider,
    order: Uuid,
    charge: &str,
) -> anyhow::Result<usize> {
    let calls = provider.calls_for(charge);
    let refunds: std::collections::HashSet<_> =
        calls.iter().filter_map(|c| c.refund_id.clone()).collect();
    let keys: std::collections::HashSet<_> = calls.iter().map(|c| c.key.clone()).collect();
    anyhow::ensure!(
        refunds.len() == 1 && keys.len() == 1 && calls.iter().all(|c| c.status == 201),
        "refund calls for {charge}: {calls:?}"
    );
    let charge = ctx.charge(order).await?;
    anyhow::ensure!(
        charge["refunded"] == true && charge["amount_refunded"] == charge["amount"],
        "charge: {charge}"
    );
    Ok(calls.len())
}

/// Mails to the platform's admin whose subject holds `fragment`.
async fn admin_mails_about(fragment: &str) -> anyhow::Result<Vec<Value>> {
    let mailpit = std::env::var("MAILPIT_URL").unwrap_or_else(|_| "http://127.0.0.1:8025".into());
    let query = format!("to:\"{ADMIN_EMAIL}\" subject:\"{fragment}\"");
    let found: Value = reqwest::Client::new()
        .get(format!("{mailpit}/api/v1/search"))
        .query(&[("query", query.as_str()), ("limit", "50")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(found["messages"].as_array().cloned().unwrap_or_default())
}

/// 1. A request nobody decides: the admins are reminded, then the process rejects it.
async fn escalation(ctx: &Ctx) -> anyhow::Result<()> {
    let (user, order) = ctx.paid_order(1_500).await?;
    // "Not received" always goes to a person.
    let reply = ctx.request_refund(&user, order, "not_received").await?;
    anyhow::ensure!(reply.status == StatusCode::CREATED, "request: {reply:?}");
    let order_ref = order.simple().to_string()[..8].to_uppercase();
    eventually(PATIENCE, || async {
        let mails = admin_mails_about(&order_ref).await?;
        anyhow::ensure!(!mails.is_empty(), "no reminder about {order_ref} yet");
        Ok(())
    })
    .await?;
    let reminders = admin_mails_about(&order_ref).await?;
    anyhow::ensure!(reminders.len() == 1, "reminders: {reminders:?}");
    let subject = reminders[0]["Subject"].as_str().unwrap_or_default();
    anyhow::ensure!(subject.starts_with("Reminder: refund request"), "{subject}");

    let steps = ctx.wait_for_request(&user, order, "REJECTED").await?;
    let position = |step: &str| steps.iter().position(|s| s == step);
    anyhow::ensure!(
        matches!((position("remind-admins"), position("timeout-comment")), (Some(r), Some(t)) if r < t),
        "the reminder did not come before the rejection: {steps:?}"
    );
    let order_now = ctx.api.order(&user, order).await?;
    anyhow::ensure!(order_now.body["status"] == "PAID", "{order_now:?}");
    // The customer hears why, in words.
    let inbox = crate::api::Inbox::new();
    inbox
        .wait_for(&user.email, &[&order_ref, "could not decide on it in time"])
        .await?;
    Ok(())
}

/// 2. payment-service dies with SIGKILL while it holds the refund step.
async fn killed_refund_worker(
    ctx: &Ctx,
    platform: &mut Platform,
    provider: &Provider,
) -> anyhow::Result<()> {
    let (user, order) = ctx.paid_order(1_200).await?;
    provider.hold(true);
    let reply = ctx.request_refund(&user, order, "damaged").await?;
    anyhow::ensure!(reply.status == StatusCode::CREATED, "request: {reply:?}");
    let charge = ctx.wait_for_held_refund(provider, order).await?;
    // The provider refunded; payment-service waits for the answer, holding the task.
    platform.kill("payment-service");
    provider.hold(false);
    platform.restart("payment-service").await?;

    let steps = ctx
        .wait_for_request_step(&user, order, "REFUNDED", Some("refunded"))
        .await?;
    anyhow::ensure!(steps.iter().any(|s| s == "refunded"), "steps: {steps:?}");
    ctx.api.wait_for_status(&user, order, "REFUNDED").await?;
    let calls = refunded_once(ctx, provider, order, &charge).await?;
    // The restarted service asked again (and was answered with the first refund).
    anyhow::ensure!(calls >= 2, "{calls} refund calls: the step never ran again");
    Ok(())
}

/// 3. The engine away for 30 s.
async fn engine_away(
    ctx: &Ctx,
    engine: &mut testkit::deps::Dependency,
    provider: &Provider,
) -> anyhow::Result<()> {
    let (product, _) = ctx.api.product(&ctx.admin, 10, 900).await?;
    // Customers who order while the engine is away, one order each.
    let mut customers = Vec::new();
    for _ in 0..3 {
        customers.push(ctx.api.customer().await?);
    }
    let (first, interrupted) = ctx.paid_order(1_100).await?;
    let (second, later) = ctx.paid_order(1_300).await?;
    // A refund whose step is under way when the engine goes.
    provider.hold(true);
    let reply = ctx.request_refund(&first, interrupted, "damaged").await?;
    anyhow::ensure!(reply.status == StatusCode::CREATED, "request: {reply:?}");
    let charge = ctx.wait_for_held_refund(provider, interrupted).await?;

    engine.stop()?;
    // payment-service now gets the provider's answer and cannot report the step.
    provider.hold(false);
    let away = tokio::time::Instant::now();
    let mut refused = 0;
    let mut placed = Vec::new();
    while away.elapsed() < ENGINE_AWAY {
        let needs_engine = [
            ctx.request_refund(&second, later, "damaged").await?,
            ctx.refund_requests(&first, interrupted).await?,
            ctx.api
                .send(
                    ctx.api
                        .client
                        .get(ctx.api.url("/api/admin/approvals"))
                        .bearer_auth(&ctx.admin),
                )
                .await?,
        ];
        for reply in needs_engine {
            let retry_after = reply
                .headers
                .get(header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            let content_type = reply
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            anyhow::ensure!(
                reply.status == StatusCode::SERVICE_UNAVAILABLE
                    && retry_after.is_some_and(|secs| secs > 0)
                    && content_type.starts_with("application/problem+json")
                    && reply.body["status"] == 503,
                "with the engine away: {reply:?} ({content_type}, Retry-After {retry_after:?})"
            );
            refused += 1;
        }
        // Ordering does not need the engine: a low-risk order is accepted unchecked.
        if let Some(customer) = customers.pop() {
            let order = ctx.api.place(&customer, &[(product, 1)], None).await?;
            anyhow::ensure!(order.status == StatusCode::CREATED, "order: {order:?}");
            let id: Uuid = order.body["id"].as_str().context("order id")?.parse()?;
            placed.push((customer, id));
        }
        // Paced so the loop samples the outage instead of flooding the gateway.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    engine.start(Duration::from_secs(240)).await?;
    anyhow::ensure!(refused >= 3, "only {refused} requests during the outage");

    // Nothing lost: the interrupted refund completes, once.
    ctx.wait_for_request(&first, interrupted, "REFUNDED")
        .await?;
    ctx.api
        .wait_for_status(&first, interrupted, "REFUNDED")
        .await?;
    refunded_once(ctx, provider, interrupted, &charge).await?;
    // The refused request, sent again, goes through.
    let reply = ctx.request_refund(&second, later, "damaged").await?;
    anyhow::ensure!(reply.status == StatusCode::CREATED, "retry: {reply:?}");
    ctx.wait_for_request(&second, later, "REFUNDED").await?;
    for (customer, order) in &placed {
        ctx.api
            .wait_for_status(customer, *order, "AWAITING_PAYMENT")
            .await?;
    }
    Ok(())
}

pub async fn run() -> anyhow::Result<()> {
    let (mut engine, engine_url) =
        testkit::deps::workflow_engine(&testkit::stack::admin_database_url()).await?;
    // A MongoDB-wire server of its own too: the shared one, busy with every other test on the
    // machine, has let services miss their 1.5 s server-selection bound at start.
    let (_mongo, mongodb_url) = testkit::deps::mongo_wire().await?;
    deploy_models(&engine_url).await?;
    let provider = Provider::start().await?;
    let mut platform = Platform::start_with_on(
        Options {
            replicas: 1,
            psp_for_payments: Some(provider.url.clone()),
            env: vec![
                (
                    "order-service",
                    "ORDER_REFUND_APPROVAL_REMINDER",
                    APPROVAL_REMINDER.into(),
                ),
                (
                    "order-service",
                    "ORDER_REFUND_APPROVAL_TIMEOUT",
                    APPROVAL_TIMEOUT.into(),
                ),
                // A held refund answer keeps the step in the handler instead of timing out.
                ("payment-service", "PSP_TIMEOUT_MS", "20000".into()),
            ],
            ..Options::default()
        },
        &Deps {
            workflow_engine_url: Some(engine_url),
            mongodb_url: Some(mongodb_url),
            ..Deps::default()
        },
    )
    .await?;
    provider.forward_to(&platform.psp);
    let api = Api::new(&platform.gateway, &platform.psp);
    let ctx = Ctx {
        admin: api.admin_token().await?,
        api,
    };
    let mut outcome = escalation(&ctx).await.context("escalation");
    if outcome.is_ok() {
        outcome = killed_refund_worker(&ctx, &mut platform, &provider)
            .await
            .context("refund worker killed mid-task");
    }
    if outcome.is_ok() {
        outcome = engine_away(&ctx, &mut engine, &provider)
            .await
            .context("engine away for 30 s");
    }
    if let Err(error) = &outcome {
        let engine_log = std::fs::read_to_string(engine.log()).unwrap_or_default();
        let tail: Vec<&str> = engine_log.lines().rev().take(30).collect();
        eprintln!(
            "refund process test failed: {error:#}\n{}\n----- workflow engine -----\n{}",
            platform.logs(40),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    outcome
}
