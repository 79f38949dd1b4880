// Nested product specs (any JSON object) as rows of a two-column table: the path of keys as the
// label (`dimensions › width`), the value as text (arrays joined, booleans as yes/no).

export interface SpecRow {
  label: string;
  value: string;
}

export function specRows(specs: unknown, yesNo: [string, string] = ['yes', 'no'], prefix: string[] = []): SpecRow[] {
  if (specs === null || typeof specs !== 'object' || Array.isArray(specs)) {
    return prefix.length ? [{ label: prefix.join(' › '), value: text(specs, yesNo) }] : [];
  }
  return Object.entries(specs as Record<string, unknown>).flatMap(([key, value]) => {
    const path = [...prefix, humanize(key)];
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return specRows(value, yesNo, path);
    return [{ label: path.join(' › '), value: text(value, yesNo) }];
  });
}

function humanize(key: string): string {
  const spaced = key.replace(/[_-]+/g, ' ').trim();
  return spaced.charAt(0).toUpperCase() + spaced.slice(1);
}

function text(value: unknown, [yes, no]: [string, string]): string {
  if (Array.isArray(value)) return value.map((v) => text(v, [yes, no])).join(', ');
  if (typeof value === 'boolean') return value ? yes : no;
  if (value === null || value === undefined) return '—';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}
