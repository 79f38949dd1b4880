// Where to go after signing in: only a path of this site (`/orders/1?x`), never another origin
// (`//evil.example`, `https://…`), so a crafted link cannot send the user away.

export function safeReturnTo(value: string | null | undefined, fallback = '/'): string {
  if (!value || !value.startsWith('/') || value.startsWith('//') || value.startsWith('/\\')) return fallback;
  if (value.startsWith('/signin')) return fallback;
  return value;
}
