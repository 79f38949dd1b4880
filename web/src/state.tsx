// App-wide state as hooks: the language (with its message function and money formatting), the
// signed-in session and the cart. Each is an external store read with useSyncExternalStore.

import { createContext, useCallback, useContext, useMemo, useState, useSyncExternalStore, type ReactNode } from 'react';
import { session, setApiLanguage } from './lib/api';
import { addItem, loadCart, saveCart, setQuantity, type CartLine } from './lib/cart';
import { initialLang, rememberLang, translate, type Lang, type MessageKey } from './lib/i18n';
import { formatMoney, type Money } from './lib/money';
import { describe } from './lib/problem';

interface I18n {
  lang: Lang;
  setLang: (lang: Lang) => void;
  t: (key: MessageKey, params?: Record<string, string | number>) => string;
  money: (money: Money) => string;
  errorText: (error: unknown) => string;
}

const I18nContext = createContext<I18n | null>(null);

export function I18nProvider({ children }: { children: ReactNode }) {
  const [lang, setLangState] = useState<Lang>(() => {
    const first = initialLang(window.localStorage, navigator.languages ?? [navigator.language]);
    setApiLanguage(first);
    document.documentElement.lang = first;
    return first;
  });
  const setLang = useCallback((next: Lang) => {
    rememberLang(window.localStorage, next);
    setApiLanguage(next);
    document.documentElement.lang = next;
    setLangState(next);
  }, []);
  const value = useMemo<I18n>(() => {
    const t = (key: MessageKey, params?: Record<string, string | number>) => translate(lang, key, params);
    return {
      lang,
      setLang,
      t,
      money: (money) => formatMoney(money, lang),
      errorText: (error) =>
        describe(error, {
          retryIn: (n) => t('error.retryIn', { n }),
          busy: t('error.busy'),
          offline: t('error.offline'),
          unexpected: t('error.unexpected'),
        }),
    };
  }, [lang, setLang]);
  return <I18nContext.Provider value={value}>{children}</I18nContext.Provider>;
}

export function useI18n(): I18n {
  const value = useContext(I18nContext);
  if (!value) throw new Error('useI18n outside I18nProvider');
  return value;
}

let sessionVersion = 0;
session.subscribe(() => {
  sessionVersion += 1;
});

/** Re-renders when the user signs in or out; returns the session manager. */
export function useSession() {
  useSyncExternalStore(
    (notify) => session.subscribe(notify),
    () => sessionVersion,
  );
  return session;
}

type Listener = () => void;
const cartListeners = new Set<Listener>();
let cartLines: CartLine[] = loadCart(window.localStorage);

function setCart(next: CartLine[]): void {
  cartLines = next;
  saveCart(window.localStorage, next);
  for (const listener of cartListeners) listener();
}

// Another tab changed the cart: take its version.
window.addEventListener('storage', () => {
  cartLines = loadCart(window.localStorage);
  for (const listener of cartListeners) listener();
});

export function useCart() {
  const lines = useSyncExternalStore(
    (notify) => {
      cartListeners.add(notify);
      return () => cartListeners.delete(notify);
    },
    () => cartLines,
  );
  return {
    lines,
    add: (item: Omit<CartLine, 'quantity'>, quantity: number) => setCart(addItem(cartLines, item, quantity)),
    setQuantity: (productId: string, quantity: number) => setCart(setQuantity(cartLines, productId, quantity)),
    replace: (next: CartLine[]) => setCart(next),
    clear: () => setCart([]),
  };
}
