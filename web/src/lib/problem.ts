// Errors of the API as people read them. Every service answers application/problem+json
// (RFC 9457) with `errors: [{field, message}]` for validation; the gateway's 429 and 503 carry
// Retry-After. One ApiError type carries all of it, and `describe` turns it into a sentence.

export interface FieldError {
  field: string;
  message: string;
}

export interface ProblemDocument {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: FieldError[];
}

export class ApiError extends Error {
  readonly status: number;
  readonly problem: ProblemDocument;
  /** Seconds to wait before trying again (429, 503 with Retry-After). */
  readonly retryAfter: number | undefined;

  constructor(status: number, problem: ProblemDocument, retryAfter?: number) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }

  get fieldErrors(): FieldError[] {
    return this.problem.errors ?? [];
  }

  /** The message for one form field, if the API named it. */
  fieldError(field: string): string | undefined {
    return this.fieldErrors.find((error) => error.field === field)?.message;
  }
}

/** The session is gone (expired refresh token, revoked family): the user must sign in again. */
export class SessionExpired extends Error {
  constructor() {
    super('session expired');
    this.name = 'SessionExpired';
  }
}

/** Retry-After as whole seconds: delta-seconds or an HTTP date; undefined when absent or bad. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** Reads a failed response as an ApiError, whether or not its body is a problem document. */
export async function problemFromResponse(response: Response): Promise<ApiError> {
  let problem: ProblemDocument = {};
  const text = await response.text().catch(() => '');
  if (text) {
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed && typeof parsed === 'object') problem = sanitize(parsed as Record<string, unknown>);
    } catch {
      problem = { detail: text.slice(0, 200) };
    }
  }
  return new ApiError(response.status, problem, parseRetryAfter(response.headers.get('retry-after')));
}

function sanitize(raw: Record<string, unknown>): ProblemDocument {
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  const errors = Array.isArray(raw.errors)
    ? raw.errors
        .filter((e): e is Record<string, unknown> => !!e && typeof e === 'object')
        .map((e) => ({ field: text(e.field) ?? '', message: text(e.message) ?? '' }))
    : undefined;
  return {
    type: text(raw.type),
    title: text(raw.title),
    status: typeof raw.status === 'number' ? raw.status : undefined,
    detail: text(raw.detail),
    errors,
  };
}

export interface ErrorWords {
  retryIn: (seconds: number) => string;
  busy: string;
  offline: string;
  unexpected: string;
}

/** One readable sentence for any error: fields named, waits counted, never a stack trace. */
export function describe(error: unknown, words: ErrorWords): string {
  if (error instanceof ApiError) {
    if (error.status === 429 || error.status === 503) {
      return error.retryAfter !== undefined ? words.retryIn(error.retryAfter) : words.busy;
    }
    const fields = error.fieldErrors
      .filter((e) => e.field || e.message)
      .map((e) => (e.field ? `${e.field}: ${e.message}` : e.message));
    if (fields.length > 0) return fields.join('; ');
    return error.problem.detail ?? error.problem.title ?? `HTTP ${error.status}`;
  }
  if (error instanceof TypeError) return words.offline;
  return words.unexpected;
}
