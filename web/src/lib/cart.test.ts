import { describe, expect, it } from 'vitest';
import { addItem, itemCount, loadCart, reconcile, saveCart, setQuantity, type CartLine } from './cart';

const kettle = { productId: 'p1', name: 'Kettle', unitPrice: { amount: 2999, currency: 'EUR' } };
const mug = { productId: 'p2', name: 'Mug', unitPrice: { amount: 500, currency: 'EUR' } };

function memoryStorage() {
  const data = new Map<string, string>();
  return { getItem: (k: string) => data.get(k) ?? null, setItem: (k: string, v: string) => void data.set(k, v), data };
}

describe('cart', () => {
  it('adds, merges, caps and removes lines', () => {
    let lines: CartLine[] = addItem([], kettle, 2);
    lines = addItem(lines, mug, 1);
    lines = addItem(lines, kettle, 1);
    expect(lines).toHaveLength(2);
    expect(lines[0].quantity).toBe(3);
    expect(itemCount(lines)).toBe(4);
    expect(setQuantity(lines, 'p1', 500)[0].quantity).toBe(99);
    expect(setQuantity(lines, 'p1', 0).map((l) => l.productId)).toEqual(['p2']);
    expect(addItem([], kettle, 0)).toEqual([]);
  });

  it('reconciles with the catalog: new prices, shortages and withdrawn products are reported', () => {
    const lines = [
      { ...kettle, quantity: 2 },
      { ...mug, quantity: 5 },
      { productId: 'p3', name: 'Gone', unitPrice: { amount: 1, currency: 'EUR' }, quantity: 1 },
    ];
    const current = new Map([
      ['p1', { name: 'Kettle', price: { amount: 3499, currency: 'EUR' }, available: 10, active: true }],
      ['p2', { name: 'Mug', price: { amount: 500, currency: 'EUR' }, available: 3, active: true }],
      ['p3', null],
    ]);
    const { lines: next, changes } = reconcile(lines, current);
    expect(next).toEqual([
      { ...kettle, unitPrice: { amount: 3499, currency: 'EUR' }, quantity: 2 },
      { ...mug, quantity: 3 },
    ]);
    expect(changes.map((c) => c.kind)).toEqual(['price', 'stock', 'gone']);
  });

  it('an up-to-date cart reconciles without changes', () => {
    const lines = [{ ...kettle, quantity: 1 }];
    const current = new Map([['p1', { name: 'Kettle', price: kettle.unitPrice, available: 1, active: true }]]);
    expect(reconcile(lines, current)).toEqual({ lines, changes: [] });
  });

  it('survives storage round trips and ignores tampered entries', () => {
    const storage = memoryStorage();
    saveCart(storage, [{ ...kettle, quantity: 2 }]);
    expect(loadCart(storage)).toEqual([{ ...kettle, quantity: 2 }]);
    storage.setItem('ferroshop.cart.v1', JSON.stringify([{ productId: 'x', quantity: -1 }, 'junk']));
    expect(loadCart(storage)).toEqual([]);
    storage.setItem('ferroshop.cart.v1', '{not json');
    expect(loadCart(storage)).toEqual([]);
  });
});
