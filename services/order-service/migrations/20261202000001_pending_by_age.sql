-- Admission control (src/admission.rs) counts the orders that have waited longest for their
-- reservation several times a second; this keeps that count to the few PENDING rows instead
-- of the whole table.
CREATE INDEX orders_pending_by_created ON orders (created_at) WHERE status = 'PENDING';
