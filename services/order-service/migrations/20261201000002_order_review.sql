-- Review of risky orders (issue 16, part 2): every new order is classified once by the
-- decision table order-risk; an order classified `review` waits REVIEW (its stock held)
-- for an admin's decision in the engine's process order-review.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('PENDING', 'REVIEW', 'AWAITING_PAYMENT', 'PAID', 'REJECTED', 'CANCELLED', 'REFUNDED'));

-- The risk check's verdict: accept, review, or unchecked (the engine could not be asked and
-- the order was below the review amount; see src/risk.rs). Orders placed before the check
-- existed have none.
ALTER TABLE orders ADD COLUMN risk TEXT CHECK (risk IN ('accept', 'review', 'unchecked'));
-- The rule that fired (large_amount, new_account, order_velocity, shipping_country, low_risk,
-- risk_check_unavailable).
ALTER TABLE orders ADD COLUMN risk_reason TEXT;
-- The order-review process of an REVIEW order, once it is started (src/review.rs starts
-- the processes of rows without one, so an engine outage delays the start and loses nothing).
ALTER TABLE orders ADD COLUMN review_process_id TEXT;
-- The reviewing admin's comment.
ALTER TABLE orders ADD COLUMN review_comment TEXT;
CREATE INDEX orders_review_unstarted ON orders (updated_at) WHERE status = 'REVIEW' AND review_process_id IS NULL;
CREATE UNIQUE INDEX orders_by_review_process ON orders (review_process_id) WHERE review_process_id IS NOT NULL;
-- The risk check counts the customer's orders of the last hour.
CREATE INDEX orders_by_user_created ON orders (user_id, created_at);

-- When each customer registered, from user.events (the risk check's account age).
CREATE TABLE customers (
    user_id       UUID PRIMARY KEY,
    registered_at TIMESTAMPTZ NOT NULL
);
