// The status an order page shows: the order as loaded, unless the live stream brought a newer
// change. The stream can deliver a change before the page's own request for the order answers
// (the order was reserved while the page loaded); the loaded order is then older than what
// the stream said, and showing it would leave the page waiting for a change that already came.
import type { Order, StatusChange } from './api';

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
