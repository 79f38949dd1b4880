// Money as the API sends it: an integer amount in minor units plus an ISO 4217 currency.
// Intl knows each currency's minor-unit digits (2 for EUR, 0 for JPY), so no table is kept here.

export interface Money {
  amount: number;
  currency: string;
}

const formatters = new Map<string, Intl.NumberFormat>();

function formatter(currency: string, locale: string): Intl.NumberFormat {
  const key = `${locale}|${currency}`;
  let found = formatters.get(key);
  if (!found) {
    found = new Intl.NumberFormat(locale, { style: 'currency', currency });
    formatters.set(key, found);
  }
  return found;
}

/** Digits after the decimal point of `currency` (2 for EUR, 0 for JPY). */
export function minorDigits(currency: string): number {
  return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions()
    .maximumFractionDigits ?? 2;
}

/** `{amount: 129900, currency: 'CNY'}` as `¥1,299.00` (zh-CN) or `CN¥1,299.00` (en). */
export function formatMoney(money: Money, locale: string): string {
  const digits = minorDigits(money.currency);
  return formatter(money.currency, locale).format(money.amount / 10 ** digits);
}

/**
 * A price typed by a person (`12.5`, `1,299.00`) in minor units, or `null` when it is not a
 * non-negative number with at most the currency's digits.
 */
export function parseMajor(text: string, currency: string): number | null {
  const digits = minorDigits(currency);
  const cleaned = text.trim().replace(/[,\s]/g, '');
  const pattern = digits === 0 ? /^\d+$/ : new RegExp(`^\\d+(\\.\\d{1,${digits}})?$`);
  if (!pattern.test(cleaned)) return null;
  const [whole, fraction = ''] = cleaned.split('.');
  const minor = Number(whole) * 10 ** digits + Number(fraction.padEnd(digits, '0') || '0');
  return Number.isSafeInteger(minor) ? minor : null;
}

/** Sums amounts of one currency; mixed currencies give one total per currency. */
export function totals(items: Money[]): Money[] {
  const sums = new Map<string, number>();
  for (const item of items) sums.set(item.currency, (sums.get(item.currency) ?? 0) + item.amount);
  return [...sums].map(([currency, amount]) => ({ amount, currency }));
}
