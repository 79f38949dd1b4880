//! The `restock` step of the `refund` process (`workflow/models/refund.bpmn`): after an
//! approved refund whose reason says the goods came back (the model decides which reasons
//! do), the order's sold units become available again and `inventory.restocked` is published.
//!
//! The step may run more than once (a lost completion, a worker killed mid-task and the task
//! locked again after its lock expired) and returns the goods once: each product records the
//! order in `restocked.<order id>` in the same guarded update as the stock change, and the
//! order's reservation document moves `committed -> restocked` with the event, guarded by
//! the status it leaves ([`Inventory::restock`]).

use anyhow::Context as _;
use uuid::Uuid;
use workflow::{EngineClient, LockedTask, TaskFailure, Variables, Worker};

use crate::inventory::Inventory;

/// The topic of the step.
pub const TOPIC: &str = "restock";

/// The worker of this service's refund step, taking tasks of `namespace` only.
pub fn worker(engine: EngineClient, inventory: Inventory, namespace: &str) -> Worker {
    Worker::new(
        engine,
        workflow::namespaced_config("product-service", namespace),
    )
    .topic(TOPIC, move |task| {
        let inventory = inventory.clone();
        async move { restock(&inventory, &task).await }
    })
}

fn uuid_variable(task: &LockedTask, name: &str) -> anyhow::Result<Uuid> {
    task.variables
        .get_str(name)?
        .parse()
        .with_context(|| format!("{name} is not a UUID"))
}

async fn restock(inventory: &Inventory, task: &LockedTask) -> Result<Variables, TaskFailure> {
    let order = uuid_variable(task, "orderId")?;
    let request = uuid_variable(task, "requestId")?;
    let restocked = inventory
        .restock(order, request)
        .await
        .with_context(|| format!("returning the goods of order {order} to stock"))?;
    tracing::info!(order_id = %order, refund_request_id = %request, restocked, "restock step done");
    Ok(Variables::new().boolean("restocked", restocked))
}
