// The cart lives in the browser (localStorage) until checkout. Prices in it are what the
// shopper saw; `reconcile` compares them with the catalog now, because order-service prices
// the order from its own replica and the shopper must see a change before paying it.

import type { Money } from './money';

export interface CartLine {
  productId: string;
  name: string;
  unitPrice: Money;
  quantity: number;
}

/** The catalog's view of one product at checkout time (`null`: it no longer exists). */
export interface CurrentProduct {
  name: string;
  price: Money;
  available: number;
  active: boolean;
}

export type CartChange =
  | { kind: 'price'; productId: string; name: string; was: Money; now: Money }
  | { kind: 'stock'; productId: string; name: string; wanted: number; available: number }
  | { kind: 'gone'; productId: string; name: string };

export const MAX_QUANTITY = 99;
const STORAGE_KEY = 'ferroshop.cart.v1';

function clamp(quantity: number): number {
  return Math.max(0, Math.min(MAX_QUANTITY, Math.floor(quantity)));
}

export function addItem(lines: CartLine[], item: Omit<CartLine, 'quantity'>, quantity = 1): CartLine[] {
  const existing = lines.find((line) => line.productId === item.productId);
  if (existing) return setQuantity(lines, item.productId, existing.quantity + quantity);
  const added = clamp(quantity);
  return added > 0 ? [...lines, { ...item, quantity: added }] : lines;
}

/** Quantity 0 removes the line. */
export function setQuantity(lines: CartLine[], productId: string, quantity: number): CartLine[] {
  const wanted = clamp(quantity);
  return lines
    .map((line) => (line.productId === productId ? { ...line, quantity: wanted } : line))
    .filter((line) => line.quantity > 0);
}

export function itemCount(lines: CartLine[]): number {
  return lines.reduce((sum, line) => sum + line.quantity, 0);
}

export function lineTotal(line: CartLine): Money {
  return { amount: line.unitPrice.amount * line.quantity, currency: line.unitPrice.currency };
}

/**
 * The cart brought up to date with the catalog: new prices and names taken, quantities cut to
 * what is available, vanished or withdrawn products removed; every difference is reported.
 */
export function reconcile(
  lines: CartLine[],
  current: ReadonlyMap<string, CurrentProduct | null>,
): { lines: CartLine[]; changes: CartChange[] } {
  const changes: CartChange[] = [];
  const next: CartLine[] = [];
  for (const line of lines) {
    const product = current.get(line.productId);
    if (!product || !product.active) {
      changes.push({ kind: 'gone', productId: line.productId, name: line.name });
      continue;
    }
    if (product.price.amount !== line.unitPrice.amount || product.price.currency !== line.unitPrice.currency) {
      changes.push({ kind: 'price', productId: line.productId, name: product.name, was: line.unitPrice, now: product.price });
    }
    let quantity = line.quantity;
    if (product.available < quantity) {
      changes.push({ kind: 'stock', productId: line.productId, name: product.name, wanted: quantity, available: Math.max(0, product.available) });
      quantity = Math.max(0, product.available);
    }
    if (quantity > 0) next.push({ productId: line.productId, name: product.name, unitPrice: product.price, quantity });
  }
  return { lines: next, changes };
}

/** Reads the stored cart, dropping anything that is not a well-formed line. */
export function loadCart(storage: Pick<Storage, 'getItem'>): CartLine[] {
  try {
    const raw: unknown = JSON.parse(storage.getItem(STORAGE_KEY) ?? '[]');
    if (!Array.isArray(raw)) return [];
    return raw.filter(
      (line): line is CartLine =>
        !!line &&
        typeof line.productId === 'string' &&
        typeof line.name === 'string' &&
        Number.isInteger(line.quantity) &&
        line.quantity > 0 &&
        typeof line.unitPrice?.amount === 'number' &&
        typeof line.unitPrice?.currency === 'string',
    );
  } catch {
    return [];
  }
}

export function saveCart(storage: Pick<Storage, 'setItem'>, lines: CartLine[]): void {
  storage.setItem(STORAGE_KEY, JSON.stringify(lines));
}
