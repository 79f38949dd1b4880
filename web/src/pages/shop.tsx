// Browsing: home with categories, search with filters, facets, sort and cursor paging, and the
// product page.

import { useEffect, useState, type FormEvent } from 'react';
import { Link, useNavigate, useParams, useSearchParams } from 'react-router-dom';
import { api, type Product, type ProductPage as Page } from '../lib/api';
import { minorDigits, parseMajor } from '../lib/money';
import { specRows } from '../lib/specs';
import { ErrorMessage, Loading, useLoad } from '../components';
import { useCart, useI18n } from '../state';

export function HomePage() {
  const { t, lang } = useI18n();
  const page = useLoad(() => api.products({ limit: 8, sort: 'newest' }), [lang]);
  return (
    <section>
      <h1>{t('home.title')}</h1>
      <ErrorMessage error={page.error} onRetry={page.reload} />
      {page.loading && !page.data && <Loading />}
      {page.data && (
        <>
          <h2>{t('home.categories')}</h2>
          <ul className="chips">
            {page.data.facets.category.map((facet) => (
              <li key={facet.value}>
                <Link to={`/search?category=${encodeURIComponent(facet.value)}`}>
                  {facet.value} ({facet.count})
                </Link>
              </li>
            ))}
          </ul>
          <h2>{t('home.new')}</h2>
          <ProductGrid products={page.data.items} />
        </>
      )}
    </section>
  );
}

function ProductGrid({ products }: { products: Product[] }) {
  const { t, money } = useI18n();
  return (
    <ul className="grid" data-testid="product-grid">
      {products.map((product) => (
        <li key={product.id} className="card">
          <Link to={`/products/${product.id}`}>
            {product.images[0] ? (
              <img src={product.images[0].url} alt={product.images[0].alt} loading="lazy" width={240} height={180} />
            ) : (
              <div className="noimg" aria-hidden="true">{t('product.noImage')}</div>
            )}
            <span className="name">{product.name}</span>
          </Link>
          <span className="price">{money(product.price)}</span>
          {product.stock.available <= 0 && <span className="muted">{t('product.outOfStock')}</span>}
        </li>
      ))}
    </ul>
  );
}

const SORTS = ['relevance', 'newest', 'price_asc', 'price_desc', 'name'] as const;

export function SearchPage() {
  const { t, lang } = useI18n();
  const [params, setParams] = useSearchParams();
  const q = params.get('q') ?? '';
  const filters = {
    q,
    category: params.get('category') ?? '',
    min_price: params.get('min_price') ?? '',
    max_price: params.get('max_price') ?? '',
    in_stock: params.get('in_stock') ?? '',
    sort: params.get('sort') ?? '',
  };
  const key = JSON.stringify(filters);
  const first = useLoad(() => api.products({ ...filters, limit: 12 }), [key, lang]);
  const [more, setMore] = useState<{ items: Product[]; cursor: string | null; error?: unknown }>({ items: [], cursor: null });
  useEffect(() => setMore({ items: [], cursor: first.data?.next_cursor ?? null }), [first.data]);
  const loadMore = async () => {
    if (!more.cursor) return;
    try {
      const page: Page = await api.products({ ...filters, limit: 12, cursor: more.cursor });
      setMore({ items: [...more.items, ...page.items], cursor: page.next_cursor });
    } catch (error) {
      setMore({ ...more, error });
    }
  };
  const apply = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const next = new URLSearchParams();
    if (q) next.set('q', q);
    for (const name of ['category', 'sort']) {
      const value = String(form.get(name) ?? '');
      if (value) next.set(name, value);
    }
    // Prices are typed in major units and sent in minor units, as the API counts them.
    const currency = first.data?.items[0]?.price.currency ?? 'CNY';
    for (const name of ['min_price', 'max_price']) {
      const value = String(form.get(name) ?? '').trim();
      const minor = value ? parseMajor(value, currency) : null;
      if (minor !== null) next.set(name, String(minor));
    }
    if (form.get('in_stock')) next.set('in_stock', 'true');
    setParams(next);
  };
  const shownCurrency = first.data?.items[0]?.price.currency ?? 'CNY';
  const majorOf = (minor: string) => (minor ? String(Number(minor) / 10 ** minorDigits(shownCurrency)) : '');
  return (
    <section className="search-page">
      <h1>{q ? `“${q}”` : t('search.label')}</h1>
      <form className="filters" onSubmit={apply} aria-label={t('filter.apply')} key={key}>
        <label>
          {t('filter.category')}
          <select name="category" defaultValue={filters.category}>
            <option value="">{t('filter.any')}</option>
            {first.data?.facets.category.map((facet) => (
              <option key={facet.value} value={facet.value}>
                {facet.value} ({facet.count})
              </option>
            ))}
            {filters.category && !first.data?.facets.category.some((f) => f.value === filters.category) && (
              <option value={filters.category}>{filters.category}</option>
            )}
          </select>
        </label>
        <label>
          {t('filter.minPrice')}
          <input name="min_price" inputMode="decimal" defaultValue={majorOf(filters.min_price)} size={6} />
        </label>
        <label>
          {t('filter.maxPrice')}
          <input name="max_price" inputMode="decimal" defaultValue={majorOf(filters.max_price)} size={6} />
        </label>
        <label className="inline">
          <input type="checkbox" name="in_stock" defaultChecked={filters.in_stock === 'true'} />
          {t('filter.inStock')}
        </label>
        <label>
          {t('filter.sort')}
          <select name="sort" defaultValue={filters.sort}>
            <option value="">—</option>
            {SORTS.map((sort) => (
              <option key={sort} value={sort}>
                {t(`sort.${sort}`)}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">{t('filter.apply')}</button>
      </form>
      <ErrorMessage error={first.error} onRetry={first.reload} />
      {first.loading && <Loading />}
      {first.data && (
        <>
          <p aria-live="polite" data-testid="result-count">
            {t('search.results', { n: first.data.total })}
          </p>
          {first.data.items.length === 0 && <p>{t('search.none')}</p>}
          <ProductGrid products={[...first.data.items, ...more.items]} />
          <ErrorMessage error={more.error} />
          {more.cursor && (
            <button type="button" onClick={loadMore}>
              {t('search.more')}
            </button>
          )}
        </>
      )}
    </section>
  );
}

export function ProductPage() {
  const { id = '' } = useParams();
  const { t, lang, money } = useI18n();
  const cart = useCart();
  const navigate = useNavigate();
  const product = useLoad(() => api.product(id), [id, lang]);
  const [quantity, setQuantity] = useState(1);
  const [added, setAdded] = useState(false);
  if (product.error) return <ErrorMessage error={product.error} onRetry={product.reload} />;
  if (!product.data) return <Loading />;
  const p = product.data;
  const rows = specRows(p.specs, lang === 'zh-CN' ? ['是', '否'] : ['yes', 'no']);
  const available = p.stock.available;
  return (
    <article className="product">
      <button type="button" className="link" onClick={() => navigate(-1)}>
        ← {t('common.back')}
      </button>
      <h1>{p.name}</h1>
      <div className="gallery">
        {p.images.length === 0 && <div className="noimg">{t('product.noImage')}</div>}
        {p.images.map((image, index) => (
          <img key={image.url} src={image.url} alt={image.alt} loading={index === 0 ? 'eager' : 'lazy'} width={360} height={270} />
        ))}
      </div>
      <p className="price" data-testid="product-price">
        {money(p.price)}
      </p>
      <p data-testid="stock-state" className={available > 0 ? 'ok' : 'muted'}>
        {available > 0 ? t('product.inStock', { n: available }) : t('product.outOfStock')}
      </p>
      <p>{p.description}</p>
      {available > 0 && p.active && (
        <form
          className="add"
          onSubmit={(event) => {
            event.preventDefault();
            cart.add({ productId: p.id, name: p.name, unitPrice: p.price }, quantity);
            setAdded(true);
          }}
        >
          <label htmlFor="quantity">{t('product.quantity')}</label>
          <input id="quantity" type="number" min={1} max={Math.min(99, available)} value={quantity} onChange={(e) => setQuantity(Math.max(1, Number(e.target.value) || 1))} />
          <button type="submit">{t('product.add')}</button>
          {added && (
            <span role="status">
              {t('product.added')} <Link to="/cart">{t('cart.title')}</Link>
            </span>
          )}
        </form>
      )}
      {rows.length > 0 && (
        <table className="specs">
          <caption>{t('product.specs')}</caption>
          <tbody>
            {rows.map((row) => (
              <tr key={row.label}>
                <th scope="row">{row.label}</th>
                <td>{row.value}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </article>
  );
}
