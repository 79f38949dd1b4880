-- Orders and their lines. The lines are immutable once priced, so they live with the order as
-- JSON; everything the service filters on is a column.
CREATE TABLE orders (
    id               UUID PRIMARY KEY,
    user_id          UUID NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('PENDING', 'AWAITING_PAYMENT', 'PAID', 'REJECTED', 'CANCELLED')),
    status_reason    TEXT,
    items            JSONB NOT NULL,
    total_amount     BIGINT NOT NULL CHECK (total_amount >= 0),
    currency         TEXT NOT NULL,
    shipping_address JSONB NOT NULL,
    payment_id       UUID,
    -- The client's Idempotency-Key of POST /api/orders and a hash of the body it came with.
    idempotency_key  TEXT,
    request_hash     TEXT,
    -- When the expiry job cancels the order if it has not moved on.
    expires_at       TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The caller's orders, newest first (ids are UUIDv7, so id order is creation order).
CREATE INDEX orders_by_user ON orders (user_id, id DESC);
-- The expiry job's scan touches only live orders.
CREATE INDEX orders_expiring ON orders (expires_at) WHERE status IN ('PENDING', 'AWAITING_PAYMENT');
-- A duplicate click with the same key finds the first order.
CREATE UNIQUE INDEX orders_idempotency ON orders (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Every status change, for support and for the tests' audit of the saga.
CREATE TABLE order_history (
    id         BIGSERIAL PRIMARY KEY,
    order_id   UUID NOT NULL REFERENCES orders (id),
    status     TEXT NOT NULL,
    reason     TEXT,
    cause      TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX order_history_by_order ON order_history (order_id, id);

-- The product replica, built from product.events (full snapshots, applied when newer).
CREATE TABLE products (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    currency   TEXT NOT NULL,
    active     BOOLEAN NOT NULL,
    version    BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Transactional outbox (see crates/messaging/src/outbox.rs).
CREATE TABLE outbox (
    id         BIGSERIAL PRIMARY KEY,
    event_id   UUID NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    key        TEXT NOT NULL,
    payload    JSONB NOT NULL,
    headers    JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Events this service has consumed (messaging::mark_processed), in the effect's transaction.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
