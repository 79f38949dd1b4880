// Order statuses in the browser: the admin filter's choices, and the status an order page shows.
//
// The status an order page shows: the order as loaded, unless the live stream brought a newer
// change. The stream can deliver a change before the page's own request for the order answers
// (the order was reserved while the page loaded); the loaded order is then older than what
// the stream said, and showing it would leave the page waiting for a change that already came.
import type { Order, OrderStatus, StatusChange } from './api';

export function withLatestChange(order: Order, changes: readonly StatusChange[]): Order {
  const loadedAt = Date.parse(order.updated_at);
  let latest: StatusChange | undefined;
  for (const change of changes) {
    const at = Date.parse(change.at);
    if (Number.isNaN(at) || (latest && at < Date.parse(latest.at))) continue;
    latest = change;
  }
  if (!latest || Date.parse(latest.at) < loadedAt) return order;
  return { ...order, status: latest.status, status_reason: latest.status_reason };
}

// Every status an order can have, in the order of its life, for the admin's status filter. A
// record keyed by the type makes the compiler refuse a status added to `OrderStatus` but missing
// here (REVIEW and REFUNDED were once left out of the filter that way).
const LIFECYCLE: Record<OrderStatus, number> = {
  PENDING: 0,
  REVIEW: 1,
  AWAITING_PAYMENT: 2,
  PAID: 3,
  REJECTED: 4,
  CANCELLED: 5,
  REFUNDED: 6,
};

export const ORDER_STATUSES: readonly OrderStatus[] = (Object.keys(LIFECYCLE) as OrderStatus[]).sort(
  (a, b) => LIFECYCLE[a] - LIFECYCLE[b],
);
