// Thin client for the public StacyVM API (/api/v1): adds the API key from
// session storage, turns {"code","message"} errors into ApiError, asks for a
// key on 401 and retries, and reads Server-Sent Events over fetch() so the
// event stream also works when auth is on (EventSource cannot send headers).

const KEY_STORAGE = 'stacyvm.apiKey';

/** Base URL of the API, relative to the page so a reverse-proxy prefix works. */
export const apiBase = () => new URL('api/v1/', document.baseURI);

export function getKey() {
  try { return sessionStorage.getItem(KEY_STORAGE) || ''; } catch { return ''; }
}

export function setKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch { /* storage disabled: key lives only until reload */ }
}

/** An API failure with the server's code and a human-readable message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
  /** "sandbox sb-1 not found (not_found)" — what the UI shows. */
  get readable() {
    if (this.status === 0) return this.message;
    return `${this.message} (${this.code || 'HTTP ' + this.status})`;
  }
}

let authHandler = null;
let pendingAuth = null;

/**
 * Registers the function that asks the user for an API key. It receives a
 * reason string and resolves to the key, or null when the user cancels.
 */
export function onAuthRequired(fn) { authHandler = fn; }

/** Asks once for a key even if several requests fail with 401 at once. */
export function requestKey(reason) {
  if (!authHandler) return Promise.resolve(null);
  if (!pendingAuth) {
    pendingAuth = Promise.resolve(authHandler(reason)).then((key) => {
      pendingAuth = null;
      if (key) setKey(key);
      return key;
    });
  }
  return pendingAuth;
}

export function url(path, query) {
  const u = new URL(path.replace(/^\//, ''), apiBase());
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v));
  }
  return u;
}

function headers(extra) {
  const h = new Headers(extra || {});
  const key = getKey();
  if (key) h.set('X-API-Key', key);
  return h;
}

async function toError(res) {
  let code = '';
  let message = '';
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    code = body.code || '';
    message = body.message || '';
  } catch {
    message = text.trim().slice(0, 300);
  }
  if (!message) message = `${res.status} ${res.statusText || 'request failed'}`.trim();
  const err = new ApiError(res.status, code, message);
  const retry = res.headers.get('Retry-After');
  if (retry) err.retryAfter = retry;
  return err;
}

/**
 * Performs a request. `opts`: body (object → JSON; Blob/ArrayBuffer/string →
 * sent raw), query, as ('json' | 'text' | 'blob' | 'response'), signal.
 */
export async function request(method, path, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    const h = headers(opts.headers);
    let body = opts.body;
    if (body !== undefined && body !== null && !(body instanceof Blob)
        && !(body instanceof ArrayBuffer) && typeof body !== 'string') {
      body = JSON.stringify(body);
      h.set('Content-Type', 'application/json');
    }
    let res;
    try {
      res = await fetch(url(path, opts.query), { method, headers: h, body, signal: opts.signal });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', `cannot reach the server: ${e.message}`);
    }
    if (res.status === 401 && attempt < 3) {
      const err = await toError(res);
      const key = await requestKey(err.message);
      if (key) continue;
      throw err;
    }
    if (!res.ok) throw await toError(res);
    const as = opts.as || 'json';
    if (as === 'response') return res;
    if (as === 'blob') return res.blob();
    if (as === 'text') return res.text();
    const text = await res.text();
    if (!text) return null;
    try { return JSON.parse(text); } catch { return text; }
  }
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, body, opts) => request('POST', path, { ...opts, body });
export const put = (path, body, opts) => request('PUT', path, { ...opts, body });
export const del = (path, opts) => request('DELETE', path, opts);

/** WebSocket URL for exec; browsers cannot set headers, so the key rides as ?api_key=. */
export function wsUrl(path) {
  const u = url(path);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  const key = getKey();
  if (key) u.searchParams.set('api_key', key);
  return u.toString();
}

/** Incremental parser for a text/event-stream body. */
export class SseParser {
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.buf = '';
    this.data = [];
    this.event = '';
    this.lastId = '';
    this.id = null;
  }
  push(chunk) {
    this.buf += chunk;
    let m;
    // Complete lines only; a trailing "\r" may be half of "\r\n", keep it.
    while ((m = /\r\n|\n|\r(?!$)/.exec(this.buf))) {
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      this.line(line);
    }
  }
  line(line) {
    if (line === '') {
      if (this.id !== null) this.lastId = this.id;
      if (this.data.length) {
        this.onMessage({ data: this.data.join('\n'), event: this.event || 'message', id: this.lastId });
      }
      this.data = []; this.event = ''; this.id = null;
      return;
    }
    if (line.startsWith(':')) return;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
  }
}

/**
 * Subscribes to /events. Uses EventSource when no key is stored, otherwise a
 * fetch() stream with the X-API-Key header; reconnects with Last-Event-ID.
 * `replay` starts with the server's recent history (event ids are evt-N).
 * Returns a function that closes the subscription.
 * `onEvent(event)` gets parsed events; `onStatus('live'|'connecting'|'offline')`.
 */
export function subscribeEvents({ types, sandboxId, onEvent, onStatus = () => {}, replay = false }) {
  let closed = false;
  // "evt-0" asks the server to replay its whole in-memory history first.
  let lastId = replay ? 'evt-0' : '';
  let es = null;
  let ctrl = null;
  let timer = null;
  let backoff = 1000;
  const query = { types: types && types.length ? types.join(',') : '', sandbox_id: sandboxId };

  const deliver = (data, id) => {
    if (id) lastId = id;
    try { onEvent(JSON.parse(data)); } catch { /* not an event object */ }
  };
  const retry = () => {
    if (closed) return;
    onStatus('connecting');
    clearTimeout(timer);
    timer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 15000);
  };

  async function viaFetch() {
    ctrl = new AbortController();
    const h = headers({ Accept: 'text/event-stream' });
    if (lastId) h.set('Last-Event-ID', lastId);
    let res;
    try {
      res = await fetch(url('events', query), { headers: h, signal: ctrl.signal, cache: 'no-store' });
    } catch {
      return retry();
    }
    if (res.status === 401) {
      const err = await toError(res);
      const key = await requestKey(err.message);
      if (key) { backoff = 1000; return connect(); }
      onStatus('offline');
      return;
    }
    if (!res.ok || !res.body) return retry();
    backoff = 1000;
    onStatus('live');
    const parser = new SseParser((m) => deliver(m.data, m.id));
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
      }
    } catch { /* aborted or network drop */ }
    retry();
  }

  function viaEventSource() {
    const u = url('events', query);
    if (lastId) u.searchParams.set('last_event_id', lastId);
    let opened = false;
    es = new EventSource(u);
    es.onopen = () => { opened = true; backoff = 1000; onStatus('live'); };
    es.onmessage = (m) => deliver(m.data, m.lastEventId);
    es.onerror = () => {
      if (es.readyState !== EventSource.CLOSED) { onStatus('connecting'); return; }
      es.close(); es = null;
      // A closed EventSource usually means a non-200 answer: 401 when auth
      // is on. The fetch path can tell and send the key.
      if (!opened) viaFetch(); else retry();
    };
  }

  function connect() {
    if (closed) return;
    onStatus('connecting');
    if (getKey() || typeof EventSource === 'undefined') viaFetch();
    else viaEventSource();
  }

  connect();
  return () => {
    closed = true;
    clearTimeout(timer);
    if (es) es.close();
    if (ctrl) ctrl.abort();
    onStatus('offline');
  };
}
