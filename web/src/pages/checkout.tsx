// Cart and checkout. The cart is checked against the catalog before the order is placed (the
// shopper sees any new price or shortage first); the order is placed with an idempotency key
// so a double click or a retried request places it once.

import { useRef, useState, type FormEvent } from 'react';
import { Link, useNavigate } from 'react-router-dom';
import { api, newIdempotencyKey, type ShippingAddress } from '../lib/api';
import { lineTotal, reconcile, type CartChange, type CurrentProduct } from '../lib/cart';
import { totals } from '../lib/money';
import { ApiError } from '../lib/problem';
import { ErrorMessage, Field } from '../components';
import { useCart, useI18n } from '../state';

export function CartPage() {
  const { t, money } = useI18n();
  const cart = useCart();
  if (cart.lines.length === 0) {
    return (
      <section>
        <h1>{t('cart.title')}</h1>
        <p>{t('cart.empty')}</p>
      </section>
    );
  }
  return (
    <section>
      <h1>{t('cart.title')}</h1>
      <table className="cart" data-testid="cart-table">
        <tbody>
          {cart.lines.map((line) => (
            <tr key={line.productId}>
              <td>
                <Link to={`/products/${line.productId}`}>{line.name}</Link>
              </td>
              <td>{money(line.unitPrice)}</td>
              <td>
                <input
                  type="number"
                  min={0}
                  max={99}
                  aria-label={t('cart.quantityOf', { name: line.name })}
                  value={line.quantity}
                  onChange={(e) => cart.setQuantity(line.productId, Number(e.target.value) || 0)}
                />
              </td>
              <td>{money(lineTotal(line))}</td>
              <td>
                <button type="button" onClick={() => cart.setQuantity(line.productId, 0)}>
                  {t('cart.remove')}
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="total" data-testid="cart-total">
        {t('cart.total')}: {totals(cart.lines.map(lineTotal)).map(money).join(' + ')}
      </p>
      <Link to="/checkout" className="button">
        {t('cart.checkout')}
      </Link>
    </section>
  );
}

const EMPTY_ADDRESS: ShippingAddress = { name: '', line1: '', line2: '', city: '', postal_code: '', country: '' };

export function CheckoutPage() {
  const { t, money } = useI18n();
  const cart = useCart();
  const navigate = useNavigate();
  const [address, setAddress] = useState<ShippingAddress>(EMPTY_ADDRESS);
  const [changes, setChanges] = useState<CartChange[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  // One key per placement attempt of this cart and address, reused when the request is retried.
  const key = useRef(newIdempotencyKey());

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const current = new Map<string, CurrentProduct | null>();
      await Promise.all(
        cart.lines.map(async (line) => {
          try {
            const product = await api.product(line.productId);
            current.set(line.productId, { name: product.name, price: product.price, available: product.stock.available, active: product.active });
          } catch (failure) {
            if (failure instanceof ApiError && failure.status === 404) current.set(line.productId, null);
            else throw failure;
          }
        }),
      );
      const checked = reconcile(cart.lines, current);
      if (checked.changes.length > 0) {
        cart.replace(checked.lines);
        setChanges(checked.changes);
        key.current = newIdempotencyKey();
        return;
      }
      const order = await api.placeOrder(
        {
          items: cart.lines.map((line) => ({ product_id: line.productId, quantity: line.quantity })),
          shipping_address: { ...address, line2: address.line2 || undefined, country: address.country.toUpperCase() },
        },
        key.current,
      );
      cart.clear();
      navigate(`/orders/${order.id}`);
    } catch (failure) {
      setError(failure);
      // A refused body (422) is not retried as-is, so the next attempt is a new placement.
      if (failure instanceof ApiError && failure.status < 500 && failure.status !== 429) key.current = newIdempotencyKey();
    } finally {
      setBusy(false);
    }
  };

  const set = (name: keyof ShippingAddress) => (e: { target: { value: string } }) => setAddress({ ...address, [name]: e.target.value });
  if (cart.lines.length === 0 && changes.length === 0) {
    return (
      <section>
        <h1>{t('checkout.title')}</h1>
        <p>{t('cart.empty')}</p>
      </section>
    );
  }
  return (
    <section>
      <h1>{t('checkout.title')}</h1>
      {changes.length > 0 && (
        <div role="alert" className="alert">
          <p>{t('checkout.changed')}</p>
          <ul>
            {changes.map((change) => (
              <li key={change.productId + change.kind}>
                {change.kind === 'price' && t('checkout.priceChanged', { name: change.name, now: money(change.now), was: money(change.was) })}
                {change.kind === 'stock' && t('checkout.stockShort', { name: change.name, available: change.available, wanted: change.wanted })}
                {change.kind === 'gone' && t('checkout.gone', { name: change.name })}
              </li>
            ))}
          </ul>
        </div>
      )}
      <p>
        {t('cart.total')}: {totals(cart.lines.map(lineTotal)).map(money).join(' + ')}
      </p>
      <form onSubmit={submit} className="stack" aria-label={t('checkout.address')}>
        <h2>{t('checkout.address')}</h2>
        <Field label={t('checkout.name')} name="shipping_address.name" error={error} value={address.name} onChange={set('name')} required autoComplete="name" />
        <Field label={t('checkout.line1')} name="shipping_address.line1" error={error} value={address.line1} onChange={set('line1')} required autoComplete="address-line1" />
        <Field label={t('checkout.line2')} name="shipping_address.line2" error={error} value={address.line2} onChange={set('line2')} autoComplete="address-line2" />
        <Field label={t('checkout.city')} name="shipping_address.city" error={error} value={address.city} onChange={set('city')} required autoComplete="address-level2" />
        <Field label={t('checkout.postal')} name="shipping_address.postal_code" error={error} value={address.postal_code} onChange={set('postal_code')} required autoComplete="postal-code" />
        <Field label={t('checkout.country')} name="shipping_address.country" error={error} value={address.country} onChange={set('country')} required maxLength={2} autoComplete="country" />
        <ErrorMessage error={error} />
        <button type="submit" disabled={busy || cart.lines.length === 0}>
          {t('checkout.place')}
        </button>
      </form>
    </section>
  );
}
