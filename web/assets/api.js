// The JSON API as the pages use it: the session's tokens, one refresh on an
// expired access token, and every failure turned into an ApiError that says
// what happened (code, status, Retry-After).

const KEY = 'flashsale.session';

/** The signed-in session `{access_token, refresh_token, user}`, or null. */
export function session() {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || 'null');
    return s && s.access_token && s.user ? s : null;
  } catch {
    return null;
  }
}

/** Keeps a login, register or refresh answer. */
export function saveSession(answer) {
  localStorage.setItem(KEY, JSON.stringify({
    access_token: answer.access_token,
    refresh_token: answer.refresh_token,
    user: answer.user,
  }));
}

export function clearSession() {
  localStorage.removeItem(KEY);
}

/** A failed request. `status` 0 means the shop could not be reached. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.details = details;
  }
}

async function send(path, { method, body, auth, extra = {} }) {
  const headers = { ...extra, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const s = session();
  if (auth && s) headers.authorization = `Bearer ${s.access_token}`;
  try {
    return await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'network', 'Could not reach the shop. Check the connection and retry.');
  }
}

async function parse(resp) {
  if (resp.status === 204) return null;
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (resp.ok) return data;
  const retry = Number.parseInt(resp.headers.get('retry-after') || '', 10);
  const err = data && data.error;
  throw new ApiError(
    resp.status,
    err ? err.code : `http_${resp.status}`,
    err ? err.message : `The shop answered ${resp.status}.`,
    Number.isFinite(retry) ? retry : null,
    err ? err.details || null : null,
  );
}

// Refresh tokens rotate, and the shop ends a session whose refresh token is
// presented twice (it cannot tell the second use from a thief's), so every
// refresh of a session must be the only one: concurrent 401s of this page
// share one, and the tabs of the shop take turns by a Web Lock; a tab that
// gets the lock after another refreshed uses the new tokens.
let refreshing = null;

async function refreshOnce(stale) {
  const s = session();
  if (!s || !s.refresh_token) return false;
  if (s.refresh_token !== stale) return true;
  try {
    const resp = await send('/auth/refresh', {
      method: 'POST', body: { refresh_token: s.refresh_token }, auth: false,
    });
    if (resp.ok) {
      saveSession(await resp.json());
      return true;
    }
    if (resp.status === 401) clearSession();
    return false;
  } catch {
    return false;
  }
}

async function refresh() {
  const s = session();
  if (!s || !s.refresh_token) return false;
  const stale = s.refresh_token;
  refreshing ??= (async () => {
    try {
      return navigator.locks
        ? await navigator.locks.request('flashsale.refresh', () => refreshOnce(stale))
        : await refreshOnce(stale);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/**
 * Calls `/api/v1${path}`; resolves to the JSON answer or throws ApiError.
 * An access token that expired is refreshed once and the request repeated.
 */
export async function api(path, {
  method = 'GET', body, auth = true, headers: extra = {},
} = {}) {
  let resp = await send(path, { method, body, auth, extra });
  if (resp.status === 401 && auth && session()) {
    const copy = resp.clone();
    let code = null;
    try {
      code = (await copy.json()).error.code;
    } catch {
      code = null;
    }
    if (code === 'unauthorized' && (await refresh())) {
      resp = await send(path, { method, body, auth, extra });
    }
  }
  return parse(resp);
}

/**
 * A fresh `Idempotency-Key`: 32 random hex digits (getRandomValues works on
 * plain http too, where randomUUID does not).
 */
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The shop's time by the `Date` header of a cheap answer, for pages with no
 * `server_time` to read: `{date, sent, received}`, `date` good to the second.
 */
export async function shopDate() {
  const sent = performance.now();
  let resp;
  try {
    resp = await fetch('/healthz', { cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'network', 'Could not reach the shop. Check the connection and retry.');
  }
  const received = performance.now();
  const date = Date.parse(resp.headers.get('date') || '');
  if (!Number.isFinite(date)) throw new ApiError(resp.status, 'no_date', 'The shop sent no time.');
  return { date, sent, received };
}

/** The JSON answer and the time it took, for clock sampling. */
export async function timed(path) {
  const sent = performance.now();
  const data = await api(path, { auth: false });
  return { data, sent, received: performance.now() };
}

/** Signs in; keeps and returns the session answer. */
export async function login(username, password) {
  const answer = await api('/auth/login', { method: 'POST', body: { username, password }, auth: false });
  saveSession(answer);
  return answer;
}

export async function register(username, email, password) {
  const answer = await api('/auth/register', {
    method: 'POST', body: { username, email, password }, auth: false,
  });
  saveSession(answer);
  return answer;
}

/** Logs out on the server (so the tokens die there too), then forgets them. */
export async function logout() {
  try {
    if (session()) await api('/auth/logout', { method: 'POST' });
  } finally {
    clearSession();
  }
}
