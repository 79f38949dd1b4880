import { describe, expect, it } from 'vitest';
import type { Order, StatusChange } from './api';
import { ORDER_STATUSES, withLatestChange } from './orderStatus';

const order = { id: 'o1', status: 'PENDING', updated_at: '2026-12-01T10:00:00.000Z' } as Order;
const change = (status: StatusChange['status'], at: string): StatusChange => ({ order_id: 'o1', status, at });

describe('withLatestChange', () => {
  it('shows a change the stream brought before the order loaded', () => {
    const shown = withLatestChange(order, [change('AWAITING_PAYMENT', '2026-12-01T10:00:00.200Z')]);
    expect(shown.status).toBe('AWAITING_PAYMENT');
  });

  it('keeps the loaded order when it is newer than every change', () => {
    const loaded = { ...order, status: 'PAID', updated_at: '2026-12-01T10:00:05.000Z' } as Order;
    expect(withLatestChange(loaded, [change('AWAITING_PAYMENT', '2026-12-01T10:00:00.200Z')]).status).toBe('PAID');
  });

  it('takes the newest change whatever order they arrived in', () => {
    const changes = [change('PAID', '2026-12-01T10:00:02.000Z'), change('AWAITING_PAYMENT', '2026-12-01T10:00:01.000Z')];
    expect(withLatestChange(order, changes).status).toBe('PAID');
  });

  it('shows the loaded order when nothing came over the stream', () => {
    expect(withLatestChange(order, [])).toBe(order);
  });
});

describe('the admin status filter', () => {
  it('offers every status, held orders and refunds included, in the order of an order life', () => {
    expect(ORDER_STATUSES).toEqual(['PENDING', 'REVIEW', 'AWAITING_PAYMENT', 'PAID', 'REJECTED', 'CANCELLED', 'REFUNDED']);
  });

  it('offers each status once', () => {
    expect(new Set(ORDER_STATUSES).size).toBe(ORDER_STATUSES.length);
  });
});
