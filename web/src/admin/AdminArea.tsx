// The admin area (a lazily loaded chunk): products (list, create, edit with nested specs and
// images, stock adjustment with a reason) and orders by status. The shell shows it only to
// tokens with role admin; the APIs check the role again.

import { useEffect, useState, type FormEvent } from 'react';
import { Link, NavLink, Route, Routes, useLocation, useNavigate, useParams, useSearchParams } from 'react-router-dom';
import { api, type Product } from '../lib/api';
import { minorDigits, parseMajor } from '../lib/money';
import { ORDER_STATUSES } from '../lib/orderStatus';
import { ErrorMessage, Field, Loading, useLoad } from '../components';
import { useI18n } from '../state';
import { StatusBadge } from '../pages/orders';

export default function AdminArea() {
  const { t } = useI18n();
  return (
    <section>
      <h1>{t('admin.title')}</h1>
      <nav aria-label={t('admin.title')} className="subnav">
        <NavLink to="/admin" end>
          {t('admin.products')}
        </NavLink>
        <NavLink to="/admin/products/new">{t('admin.newProduct')}</NavLink>
        <NavLink to="/admin/orders">{t('admin.orders')}</NavLink>
      </nav>
      <Routes>
        <Route index element={<ProductList />} />
        {/* One route for new and existing products (`new` is not an id). */}
        <Route path="products/:id" element={<ProductEditor />} />
        <Route path="orders" element={<OrderList />} />
      </Routes>
    </section>
  );
}

function ProductList() {
  const { t, money, lang } = useI18n();
  const page = useLoad(() => api.products({ limit: 100, sort: 'newest' }), [lang]);
  if (page.error) return <ErrorMessage error={page.error} onRetry={page.reload} />;
  if (!page.data) return <Loading />;
  return (
    <table className="admin-table" data-testid="admin-products">
      <thead>
        <tr>
          <th>{t('admin.sku')}</th>
          <th>{t('account.name')}</th>
          <th>{t('admin.category')}</th>
          <th>{t('admin.price')}</th>
          <th>{t('admin.available')}</th>
          <th />
        </tr>
      </thead>
      <tbody>
        {page.data.items.map((product) => (
          <tr key={product.id}>
            <td>{product.sku}</td>
            <td>{product.name}</td>
            <td>{product.category}</td>
            <td>{money(product.price)}</td>
            <td>{product.stock.available}</td>
            <td>
              <Link to={`/admin/products/${product.id}`}>{t('admin.edit')}</Link>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

interface Draft {
  sku: string;
  nameEn: string;
  nameZh: string;
  descEn: string;
  descZh: string;
  category: string;
  tags: string;
  price: string;
  currency: string;
  initialStock: string;
  specs: string;
  images: { url: string; alt: string }[];
}

const EMPTY: Draft = { sku: '', nameEn: '', nameZh: '', descEn: '', descZh: '', category: '', tags: '', price: '', currency: 'CNY', initialStock: '0', specs: '{}', images: [] };

function draftOf(product: Product): Draft {
  const zh = product.translations?.['zh-CN'];
  const en = product.translations?.en;
  // The base text is in one language, the other is a translation; the editor shows both.
  const base = { name: product.name, description: product.description };
  return {
    sku: product.sku,
    nameEn: en?.name ?? base.name,
    nameZh: zh?.name ?? '',
    descEn: en?.description ?? base.description,
    descZh: zh?.description ?? '',
    category: product.category,
    tags: product.tags.join(', '),
    price: (product.price.amount / 10 ** minorDigits(product.price.currency)).toFixed(minorDigits(product.price.currency)),
    currency: product.price.currency,
    initialStock: '0',
    specs: JSON.stringify(product.specs, null, 2),
    images: product.images,
  };
}

function ProductEditor() {
  const { id: param } = useParams();
  const id = param === 'new' ? undefined : param;
  const { t } = useI18n();
  const navigate = useNavigate();
  const location = useLocation();
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [product, setProduct] = useState<Product | null>(null);
  // A product just created arrives here by navigation, with the confirmation in its state.
  const [state, setState] = useState<{ error?: unknown; local?: string; saved?: boolean }>(() => ({
    saved: (location.state as { saved?: boolean } | null)?.saved,
  }));
  const loaded = useLoad(() => (id ? api.product(id) : Promise.resolve(null)), [id]);
  useEffect(() => {
    if (loaded.data) {
      setProduct(loaded.data);
      setDraft(draftOf(loaded.data));
    } else if (!id) {
      setProduct(null);
      setDraft(EMPTY);
    }
  }, [loaded.data, id]);

  const save = async (event: FormEvent) => {
    event.preventDefault();
    setState({});
    const price = parseMajor(draft.price, draft.currency);
    if (price === null) return setState({ local: t('admin.priceInvalid') });
    let specs: unknown;
    try {
      specs = JSON.parse(draft.specs || '{}');
      if (!specs || typeof specs !== 'object' || Array.isArray(specs)) throw new Error('not an object');
    } catch (error) {
      return setState({ local: t('admin.specsInvalid', { error: (error as Error).message }) });
    }
    const translations: Record<string, { name: string; description: string }> = {};
    if (draft.nameZh.trim()) translations['zh-CN'] = { name: draft.nameZh.trim(), description: draft.descZh.trim() };
    const common = {
      name: draft.nameEn.trim(),
      description: draft.descEn.trim(),
      translations,
      category: draft.category.trim(),
      tags: draft.tags.split(',').map((tag) => tag.trim()).filter(Boolean),
      price: { amount: price, currency: draft.currency.trim().toUpperCase() },
      specs,
      images: draft.images.filter((image) => image.url.trim()),
    };
    try {
      const saved = product
        ? await api.updateProduct(product.id, { ...common, version: product.version })
        : await api.createProduct({ ...common, sku: draft.sku.trim(), initial_stock: Number(draft.initialStock) || 0 });
      setProduct(saved);
      setState({ saved: true });
      if (!product) navigate(`/admin/products/${saved.id}`, { replace: true, state: { saved: true } });
    } catch (error) {
      setState({ error });
    }
  };
  const set = (name: keyof Draft) => (e: { target: { value: string } }) => setDraft({ ...draft, [name]: e.target.value });
  const setImage = (index: number, field: 'url' | 'alt', value: string) =>
    setDraft({ ...draft, images: draft.images.map((image, i) => (i === index ? { ...image, [field]: value } : image)) });
  if (id && loaded.error) return <ErrorMessage error={loaded.error} onRetry={loaded.reload} />;
  if (id && !product) return <Loading />;
  return (
    <>
      <form onSubmit={save} className="stack admin-form" aria-label={t('admin.save')}>
        <h2>{product ? `${product.sku} · ${product.name}` : t('admin.newProduct')}</h2>
        {!product && <Field label={t('admin.sku')} name="sku" value={draft.sku} onChange={set('sku')} error={state.error} required />}
        <Field label={t('admin.nameEn')} name="name" value={draft.nameEn} onChange={set('nameEn')} error={state.error} required />
        <Field label={t('admin.nameZh')} name="translations.zh-CN.name" value={draft.nameZh} onChange={set('nameZh')} error={state.error} />
        <Field label={t('admin.descEn')} name="description" value={draft.descEn} onChange={set('descEn')} error={state.error} />
        <Field label={t('admin.descZh')} name="translations.zh-CN.description" value={draft.descZh} onChange={set('descZh')} error={state.error} />
        <Field label={t('admin.category')} name="category" value={draft.category} onChange={set('category')} error={state.error} required />
        <Field label={t('admin.tags')} name="tags" value={draft.tags} onChange={set('tags')} error={state.error} />
        <div className="row">
          <Field label={t('admin.price')} name="price.amount" value={draft.price} onChange={set('price')} error={state.error} inputMode="decimal" required />
          <Field label={t('admin.currency')} name="price.currency" value={draft.currency} onChange={set('currency')} error={state.error} maxLength={3} required />
          {!product && <Field label={t('admin.initialStock')} name="initial_stock" type="number" min={0} value={draft.initialStock} onChange={set('initialStock')} error={state.error} />}
        </div>
        <div className="field">
          <label htmlFor="specs">{t('admin.specs')}</label>
          <textarea id="specs" rows={8} value={draft.specs} onChange={set('specs')} spellCheck={false} />
        </div>
        <fieldset>
          <legend>{t('admin.images')}</legend>
          {draft.images.map((image, index) => (
            <div className="row" key={index}>
              <Field label={t('admin.imageUrl')} name={`images[${index}].url`} value={image.url} onChange={(e) => setImage(index, 'url', e.target.value)} error={state.error} />
              <Field label={t('admin.imageAlt')} name={`images[${index}].alt`} value={image.alt} onChange={(e) => setImage(index, 'alt', e.target.value)} error={state.error} />
            </div>
          ))}
          <button type="button" onClick={() => setDraft({ ...draft, images: [...draft.images, { url: '', alt: '' }] })}>
            {t('admin.addImage')}
          </button>
        </fieldset>
        {state.local && (
          <p role="alert" className="alert">
            {state.local}
          </p>
        )}
        <ErrorMessage error={state.error} />
        {state.saved && <p role="status">{t('admin.saved')}</p>}
        <button type="submit">{t('admin.save')}</button>
      </form>
      {product && <StockForm product={product} onChange={setProduct} />}
    </>
  );
}

function StockForm({ product, onChange }: { product: Product; onChange: (product: Product) => void }) {
  const { t } = useI18n();
  const [delta, setDelta] = useState('');
  const [reason, setReason] = useState('');
  const [state, setState] = useState<{ error?: unknown; done?: boolean }>({});
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setState({});
    try {
      onChange(await api.adjustStock(product.id, Number(delta), reason.trim()));
      setDelta('');
      setReason('');
      setState({ done: true });
    } catch (error) {
      setState({ error });
    }
  };
  return (
    <form onSubmit={submit} className="stack" aria-label={t('admin.stock')}>
      <h2>{t('admin.stock')}</h2>
      <p>{t('admin.adjusted', { n: product.stock.available })}</p>
      <div className="row">
        <Field label={t('admin.delta')} name="delta" type="number" value={delta} onChange={(e) => setDelta(e.target.value)} error={state.error} required />
        <Field label={t('admin.reason')} name="reason" value={reason} onChange={(e) => setReason(e.target.value)} error={state.error} required />
      </div>
      <ErrorMessage error={state.error} />
      {state.done && <p role="status">{t('admin.adjusted', { n: product.stock.available })}</p>}
      <button type="submit">{t('admin.adjust')}</button>
    </form>
  );
}

function OrderList() {
  const { t, money, lang } = useI18n();
  const [params, setParams] = useSearchParams();
  const status = params.get('status') ?? '';
  const orders = useLoad(() => api.adminOrders(status || undefined), [status]);
  return (
    <>
      <label>
        {t('admin.statusFilter')}{' '}
        <select value={status} onChange={(e) => setParams(e.target.value ? { status: e.target.value } : {})}>
          <option value="">{t('admin.allStatuses')}</option>
          {ORDER_STATUSES.map((s) => (
            <option key={s} value={s}>
              {t(`status.${s}`)}
            </option>
          ))}
        </select>
      </label>
      <ErrorMessage error={orders.error} onRetry={orders.reload} />
      {orders.loading && <Loading />}
      {orders.data && orders.data.items.length === 0 && <p data-testid="admin-orders-empty">{t('orders.none')}</p>}
      {orders.data && orders.data.items.length > 0 && (
        <table className="admin-table" data-testid="admin-orders">
          <tbody>
            {orders.data.items.map((order) => (
              <tr key={order.id}>
                <td>
                  <Link to={`/orders/${order.id}`}>{order.id.slice(0, 8)}</Link>
                </td>
                <td>
                  <StatusBadge status={order.status} />
                </td>
                <td>{money(order.total)}</td>
                <td>{order.shipping_address.name}</td>
                <td>{new Date(order.created_at).toLocaleString(lang)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
