// Order history and the order page: the status follows the server's event stream live (no
// reload, no polling), payment happens here while the order awaits it, a declined card says
// why and lets the shopper retry, and an unpaid order can be cancelled.

import { useEffect, useState, type FormEvent } from 'react';
import { Link, useParams } from 'react-router-dom';
import { api, followOrder, newIdempotencyKey, type Order, type OrderStatus, type Payment, type StatusChange } from '../lib/api';
import { ErrorMessage, Field, Loading, useLoad } from '../components';
import { useI18n } from '../state';
import { withLatestChange } from '../lib/orderStatus';

export function OrdersPage() {
  const { t, money, lang } = useI18n();
  const orders = useLoad(() => api.orders(), []);
  if (orders.error) return <ErrorMessage error={orders.error} onRetry={orders.reload} />;
  if (!orders.data) return <Loading />;
  return (
    <section>
      <h1>{t('orders.title')}</h1>
      {orders.data.items.length === 0 && <p>{t('orders.none')}</p>}
      <ul className="orders" data-testid="order-list">
        {orders.data.items.map((order) => (
          <li key={order.id}>
            <Link to={`/orders/${order.id}`}>{order.id.slice(0, 8)}</Link> · <StatusBadge status={order.status} /> · {money(order.total)} ·{' '}
            {t('orders.placed', { date: new Date(order.created_at).toLocaleString(lang) })}
          </li>
        ))}
      </ul>
    </section>
  );
}

export function StatusBadge({ status }: { status: OrderStatus }) {
  const { t } = useI18n();
  return (
    <span className={`badge status-${status}`} data-status={status}>
      {t(`status.${status}`)}
    </span>
  );
}

const HAPPY_PATH: OrderStatus[] = ['PENDING', 'AWAITING_PAYMENT', 'PAID'];

export function OrderPage() {
  const { id = '' } = useParams();
  const { t, money, lang } = useI18n();
  const loaded = useLoad(() => api.order(id), [id]);
  const [fetched, setOrder] = useState<Order | null>(null);
  // Each change with the moment it reached this page (the browser tests report the delay).
  const [history, setHistory] = useState<(StatusChange & { receivedAt: number })[]>([]);
  const [streamError, setStreamError] = useState<unknown>(null);
  const [cancelError, setCancelError] = useState<unknown>(null);

  useEffect(() => {
    if (loaded.data) setOrder(loaded.data);
  }, [loaded.data]);

  useEffect(() => {
    const stop = new AbortController();
    setHistory([]);
    followOrder(
      id,
      (change) => {
        const receivedAt = Date.now();
        setHistory((seen) => (seen.some((c) => c.status === change.status) ? seen : [...seen, { ...change, receivedAt }]));
        setOrder((current) => (current ? { ...current, status: change.status, status_reason: change.status_reason } : current));
      },
      stop.signal,
    ).catch(setStreamError);
    return () => stop.abort();
  }, [id]);

  if (loaded.error) return <ErrorMessage error={loaded.error} onRetry={loaded.reload} />;
  if (!fetched) return <Loading />;
  const order = withLatestChange(fetched, history);
  const cancellable = order.status === 'PENDING' || order.status === 'AWAITING_PAYMENT';
  const cancel = async () => {
    if (!window.confirm(t('order.cancelConfirm'))) return;
    try {
      setOrder(await api.cancelOrder(order.id));
    } catch (error) {
      setCancelError(error);
    }
  };
  const steps: OrderStatus[] = HAPPY_PATH.includes(order.status) ? HAPPY_PATH : [...HAPPY_PATH.filter((s) => history.some((h) => h.status === s)), order.status];
  const reached = (step: OrderStatus) => steps.indexOf(step) <= steps.indexOf(order.status);
  return (
    <article>
      <h1>{t('order.title', { id: order.id.slice(0, 8) })}</h1>
      <p>
        {t('order.status')}: <StatusBadge status={order.status} /> {order.status_reason && <span className="muted">({order.status_reason})</span>}
      </p>
      <ErrorMessage error={streamError} />
      <h2>{t('order.timeline')}</h2>
      <ol className="timeline" data-testid="timeline">
        {steps.map((step) => {
          const seen = history.find((h) => h.status === step);
          return (
            <li
              key={step}
              className={reached(step) ? 'done' : 'todo'}
              aria-current={step === order.status ? 'step' : undefined}
              data-step={step}
              data-changed-at={seen ? Date.parse(seen.at) : undefined}
              data-received-at={seen?.receivedAt}
            >
              {t(`status.${step}`)}
              {seen && <span className="muted"> · {new Date(seen.at).toLocaleTimeString(lang)}</span>}
            </li>
          );
        })}
      </ol>
      {order.status === 'PENDING' && <p className="muted">{t('pay.waitReservation')}</p>}
      {order.status === 'AWAITING_PAYMENT' && <PaymentForm order={order} />}
      <h2>{t('order.items')}</h2>
      <table className="cart">
        <tbody>
          {order.items.map((item) => (
            <tr key={item.product_id}>
              <td>
                <Link to={`/products/${item.product_id}`}>{item.name}</Link>
              </td>
              <td>× {item.quantity}</td>
              <td>{money(item.line_total)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="total">
        {t('cart.total')}: {money(order.total)}
      </p>
      <p>
        {t('order.shipTo')}: {[order.shipping_address.name, order.shipping_address.line1, order.shipping_address.city, order.shipping_address.postal_code, order.shipping_address.country].filter(Boolean).join(', ')}
      </p>
      {cancellable && (
        <button type="button" onClick={cancel}>
          {t('order.cancel')}
        </button>
      )}
      <ErrorMessage error={cancelError} />
    </article>
  );
}

function PaymentForm({ order }: { order: Order }) {
  const { t, money } = useI18n();
  const year = new Date().getFullYear() + 2;
  const [card, setCard] = useState({ number: '', exp_month: '12', exp_year: String(year), cvc: '' });
  const [error, setError] = useState<unknown>(null);
  const [payment, setPayment] = useState<Payment | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      // A new key per attempt: a retry after a decline is a new payment, not a replay.
      const result = await api.pay(order.id, { number: card.number, exp_month: Number(card.exp_month), exp_year: Number(card.exp_year), cvc: card.cvc }, newIdempotencyKey());
      setPayment(result);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };
  const set = (name: keyof typeof card) => (e: { target: { value: string } }) => setCard({ ...card, [name]: e.target.value });
  return (
    <form onSubmit={submit} className="stack" aria-label={t('pay.title')}>
      <h2>{t('pay.title')}</h2>
      <p className="muted">{t('pay.testCards')}</p>
      <Field label={t('pay.number')} name="card.number" error={error} value={card.number} onChange={set('number')} inputMode="numeric" autoComplete="cc-number" required />
      <div className="row">
        <Field label={t('pay.expMonth')} name="card.exp_month" error={error} value={card.exp_month} onChange={set('exp_month')} inputMode="numeric" size={3} required />
        <Field label={t('pay.expYear')} name="card.exp_year" error={error} value={card.exp_year} onChange={set('exp_year')} inputMode="numeric" size={5} required />
        <Field label={t('pay.cvc')} name="card.cvc" error={error} value={card.cvc} onChange={set('cvc')} inputMode="numeric" size={4} required autoComplete="cc-csc" />
      </div>
      {payment?.status === 'failed' && (
        <p role="alert" className="alert" data-testid="payment-declined">
          {t('pay.declined', { reason: payment.failure_reason ?? 'declined' })}
        </p>
      )}
      {payment?.status === 'pending' && <p role="status">{t('pay.pending')}</p>}
      <ErrorMessage error={error} />
      <button type="submit" disabled={busy}>
        {t('pay.submit', { amount: money(order.total) })}
      </button>
    </form>
  );
}
