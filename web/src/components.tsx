// Small pieces shared by the pages: error and loading states, the field with its API error,
// and a hook that loads data with both.

import { Component, useEffect, useState, type ReactNode, type InputHTMLAttributes } from 'react';
import { ApiError } from './lib/problem';
import { useI18n } from './state';

export function ErrorMessage({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const { t, errorText } = useI18n();
  if (!error) return null;
  return (
    <div role="alert" className="alert">
      <span>{errorText(error)}</span>
      {onRetry && (
        <button type="button" onClick={onRetry}>
          {t('common.retry')}
        </button>
      )}
    </div>
  );
}

export function Loading() {
  const { t } = useI18n();
  return (
    <p aria-live="polite" className="muted">
      {t('common.loading')}
    </p>
  );
}

/** A labelled input showing the API's message for `name` (problem+json `errors[].field`). */
export function Field({ label, name, error, ...input }: { label: string; name: string; error?: unknown } & InputHTMLAttributes<HTMLInputElement>) {
  const message = error instanceof ApiError ? error.fieldError(name) : undefined;
  const id = `field-${name}`;
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <input id={id} name={name} aria-invalid={message ? true : undefined} aria-describedby={message ? `${id}-error` : undefined} {...input} />
      {message && (
        <span id={`${id}-error`} className="field-error">
          {message}
        </span>
      )}
    </div>
  );
}

/** Loads `load()` when `deps` change; `reload` runs it again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]) {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let live = true;
    setState((previous) => ({ data: previous.data, loading: true }));
    load().then(
      (data) => live && setState({ data, loading: false }),
      (error: unknown) => live && setState({ error, loading: false }),
    );
    return () => {
      live = false;
    };
    // `deps` are the caller's: `load` is a new closure on every render and is not one of them.
  }, [...deps, attempt]);
  return { ...state, reload: () => setAttempt((n) => n + 1), set: (data: T) => setState({ data, loading: false }) };
}

/** No blank screens: a page that throws while rendering shows a message instead. */
export class ErrorBoundary extends Component<{ fallback: ReactNode; children: ReactNode }, { failed: boolean }> {
  state = { failed: false };
  static getDerivedStateFromError() {
    return { failed: true };
  }
  render() {
    return this.state.failed ? this.props.fallback : this.props.children;
  }
}
