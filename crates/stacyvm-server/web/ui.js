// Small DOM and formatting helpers shared by the pages: element builder,
// toasts (aria-live), confirm/prompt dialogs, and formatters.

/**
 * Builds an element: h('a', {href: '#/x', class: 'btn'}, 'text', child).
 * Attributes starting with "on" become listeners; `null`/`false` are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' || k === 'checked' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function toast(message, kind = 'info', timeout = 5000) {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : null },
    h('span', {}, message),
    h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', onclick: () => t.remove() }, '×'));
  box.append(t);
  while (box.children.length > 4) box.firstChild.remove();
  if (timeout) setTimeout(() => t.remove(), kind === 'error' ? timeout * 2 : timeout);
  return t;
}

/** Shows an error from any source in a toast and returns its text. */
export function showError(err, prefix) {
  const msg = err && err.readable ? err.readable : (err && err.message) || String(err);
  toast(prefix ? `${prefix}: ${msg}` : msg, 'error');
  return msg;
}

function runDialog(dialog) {
  return new Promise((resolve) => {
    const close = () => { dialog.removeEventListener('close', close); resolve(dialog.returnValue); };
    dialog.returnValue = '';
    dialog.addEventListener('close', close);
    dialog.showModal();
  });
}

/** Modal confirmation; resolves true when confirmed. */
export async function confirmDialog(title, text, okLabel = 'Confirm') {
  const d = document.getElementById('confirm-dialog');
  d.querySelector('#confirm-title').textContent = title;
  d.querySelector('#confirm-text').textContent = text;
  d.querySelector('#confirm-ok').textContent = okLabel;
  const r = runDialog(d);
  d.querySelector('button[value="cancel"]').focus();
  return (await r) === 'ok';
}

/** Modal single-field prompt; resolves the value or null. */
export async function promptDialog({ title, label, value = '', hint = '', placeholder = '', required = true }) {
  const d = document.getElementById('prompt-dialog');
  d.querySelector('#prompt-title').textContent = title;
  d.querySelector('#prompt-label').textContent = label;
  d.querySelector('#prompt-hint').textContent = hint;
  const input = d.querySelector('#prompt-input');
  input.value = value;
  input.placeholder = placeholder;
  input.required = required;
  const r = runDialog(d);
  input.select();
  return (await r) === 'ok' ? input.value.trim() : null;
}

export function stateBadge(state) {
  return h('span', { class: `badge state-${state || 'unknown'}` }, state || 'unknown');
}

export function healthBadge(ok) {
  return h('span', { class: `badge ${ok ? 'ok' : 'bad'}` }, ok ? 'healthy' : 'unhealthy');
}

export function fmtTime(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toLocaleString();
}

/** "in 5m", "3h ago". */
export function fmtRelative(ts, now = Date.now()) {
  if (!ts) return '—';
  const t = new Date(ts).getTime();
  if (isNaN(t)) return String(ts);
  const s = Math.round((t - now) / 1000);
  const a = Math.abs(s);
  if (a < 5) return 'just now';
  const part = a < 60 ? `${a}s` : a < 3600 ? `${Math.floor(a / 60)}m` : a < 86400
    ? `${Math.floor(a / 3600)}h${Math.floor((a % 3600) / 60) ? Math.floor((a % 3600) / 60) + 'm' : ''}`
    : `${Math.floor(a / 86400)}d`;
  return s >= 0 ? `in ${part}` : `${part} ago`;
}

export function timeEl(ts) {
  return h('time', { datetime: ts || '', title: fmtTime(ts) }, fmtRelative(ts));
}

export function fmtBytes(n) {
  if (n === null || n === undefined || isNaN(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return '—';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms * 10) / 10} ms`;
}

/** A labelled form field: label + control (+ optional hint). */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintEl = hint ? h('small', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

export function select(name, options, value) {
  return h('select', { name },
    options.map((o) => {
      const [v, text] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: v === value }, text);
    }));
}

/** A section with a heading, for landmarks: region labelled by its h2. */
export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

export function empty(text) {
  return h('p', { class: 'empty' }, text);
}

export function loading() {
  return h('p', { class: 'muted', 'aria-busy': 'true' }, 'Loading…');
}

/** Triggers a browser download of a Blob. */
export function saveBlob(blob, name) {
  const a = h('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

/** Runs `fn` every `ms` while the tab is visible; returns a stop function. */
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) { try { await fn(); } catch { /* shown by fn */ } }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => { stopped = true; clearTimeout(timer); };
}
