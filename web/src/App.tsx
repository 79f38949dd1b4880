// The shell: header (search, cart, account, language), the routes, and the two global
// behaviours: an expired session sends the user to sign in and back, and a page that fails to
// render shows a message, never a blank screen. The admin area is a separate chunk, loaded
// only by admins, so customers never download it.

import { lazy, Suspense, useEffect, useState, type FormEvent } from 'react';
import { Link, NavLink, Route, Routes, useLocation, useNavigate, useSearchParams } from 'react-router-dom';
import { api, session } from './lib/api';
import { itemCount } from './lib/cart';
import { LANGS, type Lang } from './lib/i18n';
import { ErrorBoundary, Loading } from './components';
import { useCart, useI18n, useSession } from './state';
import { HomePage, ProductPage, SearchPage } from './pages/shop';
import { CartPage, CheckoutPage } from './pages/checkout';
import { OrderPage, OrdersPage } from './pages/orders';
import { AccountPage } from './pages/account';
import { RegisterPage, SignInCompletePage, SignInPage, RequireSignIn, signInPath } from './pages/auth';

const AdminArea = lazy(() => import('./admin/AdminArea'));

export function App() {
  const { t } = useI18n();
  const location = useLocation();
  const navigate = useNavigate();
  useEffect(
    () =>
      session.subscribe((event) => {
        if (event !== 'expired') return;
        const here = window.location.pathname + window.location.search;
        if (!here.startsWith('/signin')) navigate(signInPath(here, true));
      }),
    [navigate],
  );
  return (
    <>
      <a className="skip" href="#main">
        {t('skip')}
      </a>
      <Header />
      <main id="main" tabIndex={-1}>
        <ErrorBoundary key={location.pathname} fallback={<p role="alert">{t('error.crashed')}</p>}>
          <Suspense fallback={<Loading />}>
            <Routes>
              <Route path="/" element={<HomePage />} />
              <Route path="/search" element={<SearchPage />} />
              <Route path="/products/:id" element={<ProductPage />} />
              <Route path="/cart" element={<CartPage />} />
              <Route path="/checkout" element={<RequireSignIn><CheckoutPage /></RequireSignIn>} />
              <Route path="/orders" element={<RequireSignIn><OrdersPage /></RequireSignIn>} />
              <Route path="/orders/:id" element={<RequireSignIn><OrderPage /></RequireSignIn>} />
              <Route path="/account" element={<RequireSignIn><AccountPage /></RequireSignIn>} />
              <Route path="/signin" element={<SignInPage />} />
              <Route path="/signin/complete" element={<SignInCompletePage />} />
              <Route path="/register" element={<RegisterPage />} />
              <Route path="/admin/*" element={<RequireSignIn><AdminGate /></RequireSignIn>} />
              <Route path="*" element={<p role="alert">{t('error.notFound')}</p>} />
            </Routes>
          </Suspense>
        </ErrorBoundary>
      </main>
    </>
  );
}

/** Customers are refused here without the admin code ever loading; the APIs refuse them too. */
function AdminGate() {
  const current = useSession();
  const { t } = useI18n();
  if (!current.isAdmin) {
    return (
      <section>
        <h1>{t('admin.title')}</h1>
        <p role="alert" data-testid="admin-forbidden">
          {t('admin.forbidden')}
        </p>
      </section>
    );
  }
  return <AdminArea />;
}

function Header() {
  const { t, lang, setLang } = useI18n();
  const current = useSession();
  const { lines } = useCart();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const location = useLocation();
  const [text, setText] = useState(location.pathname === '/search' ? params.get('q') ?? '' : '');
  const [suggestions, setSuggestions] = useState<string[]>([]);
  // Search as you type: completions from the catalog, a moment after the last keystroke.
  useEffect(() => {
    const typed = text.trim();
    if (!typed) return setSuggestions([]);
    const stop = new AbortController();
    const timer = setTimeout(() => {
      api.suggest(typed, stop.signal).then(
        (found) => setSuggestions(found.suggestions.map((s) => s.name)),
        () => setSuggestions([]),
      );
    }, 150);
    return () => {
      clearTimeout(timer);
      stop.abort();
    };
  }, [text]);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    navigate(`/search?q=${encodeURIComponent(text.trim())}`);
  };
  const signOut = async () => {
    const refresh = current.current?.refreshToken;
    current.signOut();
    if (refresh) await api.logout(refresh).catch(() => undefined);
    navigate('/');
  };
  return (
    <header className="top">
      <Link to="/" className="brand">
        {t('brand')}
      </Link>
      <form role="search" onSubmit={submit} className="search">
        <label htmlFor="search-box" className="visually-hidden">
          {t('search.label')}
        </label>
        <input id="search-box" type="search" list="search-suggestions" autoComplete="off" value={text} placeholder={t('search.placeholder')} onChange={(e) => setText(e.target.value)} />
        <datalist id="search-suggestions" data-testid="search-suggestions">
          {suggestions.map((name) => (
            <option key={name} value={name} />
          ))}
        </datalist>
        <button type="submit">{t('search.submit')}</button>
      </form>
      <nav aria-label="main">
        <NavLink to="/cart" data-testid="cart-link">
          {t('nav.cart', { n: itemCount(lines) })}
        </NavLink>
        {current.current ? (
          <>
            <NavLink to="/orders">{t('nav.orders')}</NavLink>
            <NavLink to="/account">{t('nav.account')}</NavLink>
            {current.isAdmin && <NavLink to="/admin">{t('nav.admin')}</NavLink>}
            <button type="button" className="link" onClick={signOut}>
              {t('nav.signout')}
            </button>
          </>
        ) : (
          <NavLink to={`/signin?return_to=${encodeURIComponent(location.pathname + location.search)}`}>{t('nav.signin')}</NavLink>
        )}
        <label htmlFor="lang-select" className="visually-hidden">
          {t('nav.language')}
        </label>
        <select id="lang-select" value={lang} onChange={(e) => setLang(e.target.value as Lang)}>
          {LANGS.map((code) => (
            <option key={code} value={code}>
              {code === 'en' ? 'English' : '简体中文'}
            </option>
          ))}
        </select>
      </nav>
    </header>
  );
}
