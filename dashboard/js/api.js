// The one way the dashboard talks to the config center: the public /api/v1 on the same
// origin, with the session cookie, the CSRF token on writes and If-Match where the page
// read an ETag.

export class ApiError extends Error {
  constructor(status, body, headers) {
    const e = (body && body.error) || {};
    super(e.message || (status ? `HTTP ${status}` : 'The config center did not answer'));
    this.status = status;
    this.code = e.code || (status ? `http_${status}` : 'network');
    this.details = Array.isArray(e.details) ? e.details : [];
    this.retryAfter = headers ? headers.get('retry-after') : null;
  }
}

const session = { csrf: null, user: null, role: null, onLost: null };
export { session };

/** Wait for propagation on writes: the answer says which workers applied it. */
export const WAIT_APPLIED = '5s';

function url(path, query) {
  const u = new URL(`/api/v1${path}`, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v));
  }
  return u;
}

/**
 * api('GET', '/namespaces', {query}) -> {status, json, etag, headers, text}.
 * Throws ApiError for every status but 2xx.
 */
export async function api(method, path, opts = {}) {
  const headers = { Accept: opts.accept || 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  if (opts.ifMatch) headers['If-Match'] = opts.ifMatch;
  let res;
  try {
    res = await fetch(url(path, opts.query), {
      method,
      headers,
      credentials: 'same-origin',
      cache: 'no-store',
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch (_) {
    throw new ApiError(0, null, null);
  }
  const text = await res.text();
  let json = null;
  if (text && (res.headers.get('content-type') || '').includes('json')) {
    try { json = JSON.parse(text); } catch (_) { json = null; }
  }
  if (res.status < 200 || res.status > 299) {
    const err = new ApiError(res.status, json, res.headers);
    if (res.status === 401 && !opts.noRedirect && session.onLost) session.onLost();
    throw err;
  }
  return { status: res.status, json, etag: res.headers.get('etag'), headers: res.headers, text };
}

/** GET -> the whole JSON body (with .etag attached as a hidden property). */
export async function get(path, query) {
  const r = await api('GET', path, { query });
  const body = r.json || {};
  Object.defineProperty(body, 'etag', { value: r.etag, enumerable: false });
  return body;
}

/** Every page of a keyset-paged list (bounded: at most `max` items). */
export async function getAll(path, query, max = 5000) {
  const items = [];
  let cursor;
  let etag = null;
  do {
    const r = await api('GET', path, { query: { ...query, limit: 1000, cursor } });
    etag = etag || r.etag;
    items.push(...((r.json && r.json.items) || []));
    cursor = r.json && r.json.next_cursor;
  } while (cursor && items.length < max);
  Object.defineProperty(items, 'etag', { value: etag, enumerable: false });
  return items;
}

/**
 * A configuration write: waits for propagation (wait_applied) and answers the write's
 * envelope {data, config_version, changed, applied, ...}; `etag` goes as If-Match.
 */
export async function write(method, path, body, etag, query) {
  const r = await api(method, path, {
    body,
    ifMatch: etag || undefined,
    query: { wait_applied: WAIT_APPLIED, ...query },
  });
  return r.json || {};
}

/**
 * Reads an item again before acting on it as displayed: when it changed since `seen` (its
 * updated_at), the action is refused as the API refuses a stale If-Match (412); else the
 * answer carries the ETag the write sends.
 */
export async function fresh(path, seen) {
  const cur = await get(path);
  if (seen && seen.updated_at && cur.updated_at !== seen.updated_at) {
    throw new ApiError(412, { error: { code: 'precondition_failed', message: 'changed by someone else' } }, null);
  }
  return cur;
}
