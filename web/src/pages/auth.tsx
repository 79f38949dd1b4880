// Sign-in: e-mail and password, registration, and the SPA side of "Sign in with Google" (the
// server runs the OIDC flow and lands the browser on /signin/complete with a one-time ticket,
// exchanged here for the same tokens as an e-mail login).

import { useEffect, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { Link, Navigate, useLocation, useNavigate, useSearchParams } from 'react-router-dom';
import { api, session } from '../lib/api';
import { safeReturnTo } from '../lib/returnTo';
import { ErrorMessage, Field } from '../components';
import { useI18n, useSession } from '../state';

/** The sign-in page that comes back to `path`, saying why when the server ended the session. */
export function signInPath(path: string, expired: boolean): string {
  return `/signin?${expired ? 'expired=1&' : ''}return_to=${encodeURIComponent(path)}`;
}

export function RequireSignIn({ children }: { children: ReactNode }) {
  const current = useSession();
  const location = useLocation();
  if (!current.current) {
    return <Navigate replace to={signInPath(location.pathname + location.search, current.expired)} />;
  }
  return <>{children}</>;
}

function GoogleButton({ returnTo }: { returnTo: string }) {
  const { t } = useI18n();
  return (
    <a className="button google" href={`/api/users/oidc/google/authorize?return_to=${encodeURIComponent(returnTo)}`} data-testid="google-signin">
      {t('auth.google')}
    </a>
  );
}

export function SignInPage() {
  const { t } = useI18n();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const returnTo = safeReturnTo(params.get('return_to'));
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      session.signIn(await api.login(email.trim(), password));
      navigate(returnTo, { replace: true });
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="narrow">
      <h1>{t('auth.signinTitle')}</h1>
      {params.get('expired') && (
        <p role="alert" className="alert">
          {t('auth.expired')}
        </p>
      )}
      <form onSubmit={submit} className="stack" aria-label={t('auth.signinTitle')}>
        <Field label={t('auth.email')} name="email" type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} error={error} />
        <Field label={t('auth.password')} name="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} error={error} />
        <ErrorMessage error={error} />
        <button type="submit" disabled={busy}>
          {t('auth.signin')}
        </button>
      </form>
      <p className="muted">{t('auth.or')}</p>
      <GoogleButton returnTo={returnTo} />
      <p>
        <Link to={`/register?return_to=${encodeURIComponent(returnTo)}`}>{t('auth.noAccount')}</Link>
      </p>
    </section>
  );
}

export function RegisterPage() {
  const { t, lang } = useI18n();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const returnTo = safeReturnTo(params.get('return_to'));
  const [form, setForm] = useState({ name: '', email: '', password: '' });
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.register({ name: form.name.trim(), email: form.email.trim(), password: form.password, locale: lang });
      session.signIn(await api.login(form.email.trim(), form.password));
      navigate(returnTo, { replace: true });
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };
  const set = (name: keyof typeof form) => (e: { target: { value: string } }) => setForm({ ...form, [name]: e.target.value });
  return (
    <section className="narrow">
      <h1>{t('auth.registerTitle')}</h1>
      <form onSubmit={submit} className="stack" aria-label={t('auth.registerTitle')}>
        <Field label={t('auth.name')} name="name" autoComplete="name" required value={form.name} onChange={set('name')} error={error} />
        <Field label={t('auth.email')} name="email" type="email" autoComplete="email" required value={form.email} onChange={set('email')} error={error} />
        <Field label={t('auth.password')} name="password" type="password" autoComplete="new-password" required value={form.password} onChange={set('password')} error={error} />
        <ErrorMessage error={error} />
        <button type="submit" disabled={busy}>
          {t('auth.register')}
        </button>
      </form>
      <p className="muted">{t('auth.or')}</p>
      <GoogleButton returnTo={returnTo} />
      <p>
        <Link to={`/signin?return_to=${encodeURIComponent(returnTo)}`}>{t('auth.haveAccount')}</Link>
      </p>
    </section>
  );
}

/** `/signin/complete?ticket=…&return_to=…` or `?error=<code>&detail=<text>`. */
export function SignInCompletePage() {
  const { t } = useI18n();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const current = useSession();
  const ticket = params.get('ticket');
  const refusal = params.get('error');
  const returnTo = safeReturnTo(params.get('return_to'));
  const [error, setError] = useState<unknown>(null);
  // The ticket is single-use: exchange it once even under StrictMode's double effects.
  const exchanged = useRef(false);
  useEffect(() => {
    if (!ticket || refusal || exchanged.current) return;
    exchanged.current = true;
    api.exchangeTicket(ticket).then(
      (tokens) => {
        current.signIn(tokens);
        navigate(returnTo, { replace: true });
      },
      setError,
    );
  }, [ticket, refusal, returnTo, navigate, current]);
  if (refusal || (!ticket && !error)) {
    return (
      <section className="narrow" data-testid="signin-refused">
        <h1>{t('auth.refused')}</h1>
        <p role="alert" className="alert">
          {t('auth.refusedDetail', { code: refusal ?? 'missing_ticket', detail: params.get('detail') ?? '' })}
        </p>
        <Link to="/signin">{t('auth.tryAgain')}</Link>
      </section>
    );
  }
  if (error) {
    return (
      <section className="narrow" data-testid="signin-refused">
        <h1>{t('auth.refused')}</h1>
        <ErrorMessage error={error} />
        <Link to="/signin">{t('auth.tryAgain')}</Link>
      </section>
    );
  }
  return <p aria-live="polite">{t('auth.completing')}</p>;
}
