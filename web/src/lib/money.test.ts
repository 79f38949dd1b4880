import { describe, expect, it } from 'vitest';
import { formatMoney, minorDigits, parseMajor, totals } from './money';

describe('money', () => {
  it('formats minor units per currency and locale', () => {
    expect(formatMoney({ amount: 129900, currency: 'CNY' }, 'zh-CN')).toBe('¥1,299.00');
    expect(formatMoney({ amount: 129900, currency: 'CNY' }, 'en')).toBe('CN¥1,299.00');
    expect(formatMoney({ amount: 2999, currency: 'EUR' }, 'en')).toBe('€29.99');
    expect(formatMoney({ amount: 1500, currency: 'JPY' }, 'en')).toBe('¥1,500');
  });

  it('knows the minor digits of each currency', () => {
    expect(minorDigits('EUR')).toBe(2);
    expect(minorDigits('JPY')).toBe(0);
    expect(minorDigits('KWD')).toBe(3);
  });

  it('parses typed prices into minor units and refuses junk', () => {
    expect(parseMajor('12.5', 'EUR')).toBe(1250);
    expect(parseMajor('1,299.00', 'CNY')).toBe(129900);
    expect(parseMajor('7', 'EUR')).toBe(700);
    expect(parseMajor('1500', 'JPY')).toBe(1500);
    expect(parseMajor('12.345', 'EUR')).toBeNull();
    expect(parseMajor('-1', 'EUR')).toBeNull();
    expect(parseMajor('abc', 'EUR')).toBeNull();
    expect(parseMajor('1.5', 'JPY')).toBeNull();
  });

  it('sums per currency', () => {
    expect(totals([{ amount: 100, currency: 'EUR' }, { amount: 250, currency: 'EUR' }, { amount: 5, currency: 'CNY' }])).toEqual([
      { amount: 350, currency: 'EUR' },
      { amount: 5, currency: 'CNY' },
    ]);
  });
});
