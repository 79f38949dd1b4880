-- Refund requests (issue 16): a paid order may become REFUNDED.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('PENDING', 'AWAITING_PAYMENT', 'PAID', 'REJECTED', 'CANCELLED', 'REFUNDED'));

-- A customer's request to get the money of a paid order back. The workflow engine runs its
-- process (`refund`, business key = order id) and owns its progress; this row is what the shop
-- promises the customer: which order, why, how much, and how it ended.
CREATE TABLE refund_requests (
    id                  UUID PRIMARY KEY,
    order_id            UUID NOT NULL REFERENCES orders (id),
    user_id             UUID NOT NULL,
    reason              TEXT NOT NULL,
    -- The lines the customer names (optional; the provider refunds whole charges).
    items               JSONB,
    amount              BIGINT NOT NULL CHECK (amount >= 0),
    currency            TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('OPEN', 'REFUNDED', 'REJECTED')),
    process_instance_id TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    closed_at           TIMESTAMPTZ
);
-- At most one open request per order: a second one is a 409, decided by this index.
CREATE UNIQUE INDEX refund_requests_one_open ON refund_requests (order_id) WHERE status = 'OPEN';
CREATE INDEX refund_requests_by_order ON refund_requests (order_id, created_at);
-- The approval table's "refunds in the last 90 days" per customer.
CREATE INDEX refund_requests_refunded_by_user ON refund_requests (user_id, closed_at) WHERE status = 'REFUNDED';
-- The admin's comment when a request was decided by hand (approved or rejected).
ALTER TABLE refund_requests ADD COLUMN decision_comment TEXT;
