import { describe, expect, it } from 'vitest';
import { SseParser } from './sse';
import { specRows } from './specs';
import { fromBrowser, initialLang, translate } from './i18n';
import { safeReturnTo } from './returnTo';

describe('server-sent events', () => {
  it('parses events split across chunks, with comments and CRLF', () => {
    const parser = new SseParser();
    expect(parser.push(': keep-alive\n\nevent: status\ndata: {"status":')).toEqual([]);
    expect(parser.push('"PAID"}\r\n\r\nevent: status\ndata: a\ndata: b\n\n')).toEqual([
      { event: 'status', data: '{"status":"PAID"}', id: undefined },
      { event: 'status', data: 'a\nb', id: undefined },
    ]);
  });
});

describe('specs', () => {
  it('flattens nested specs into readable rows', () => {
    expect(specRows({ brand: 'Acme', dimensions: { width_mm: 120, depth: { inner: 3 } }, colors: ['red', 'blue'], wifi: true }, ['yes', 'no'])).toEqual([
      { label: 'Brand', value: 'Acme' },
      { label: 'Dimensions › Width mm', value: '120' },
      { label: 'Dimensions › Depth › Inner', value: '3' },
      { label: 'Colors', value: 'red, blue' },
      { label: 'Wifi', value: 'yes' },
    ]);
    expect(specRows(null)).toEqual([]);
  });
});

describe('languages', () => {
  it('defaults from the browser and remembers the choice', () => {
    expect(fromBrowser(['zh-CN', 'en'])).toBe('zh-CN');
    expect(fromBrowser(['zh-Hans-CN'])).toBe('zh-CN');
    expect(fromBrowser(['fr-FR', 'en-GB'])).toBe('en');
    expect(fromBrowser([])).toBe('en');
    expect(initialLang({ getItem: () => 'en' }, ['zh-CN'])).toBe('en');
    expect(initialLang({ getItem: () => 'xx' }, ['zh-CN'])).toBe('zh-CN');
  });

  it('fills placeholders', () => {
    expect(translate('en', 'nav.cart', { n: 2 })).toBe('Cart (2)');
    expect(translate('zh-CN', 'error.retryIn', { n: 5 })).toBe('当前繁忙：请 5 秒后重试。');
  });
});

describe('return_to', () => {
  it('keeps same-site paths only', () => {
    expect(safeReturnTo('/orders/1?x=1')).toBe('/orders/1?x=1');
    expect(safeReturnTo('//evil.example/')).toBe('/');
    expect(safeReturnTo('https://evil.example/')).toBe('/');
    expect(safeReturnTo('/\\evil.example')).toBe('/');
    expect(safeReturnTo(null)).toBe('/');
  });
});
