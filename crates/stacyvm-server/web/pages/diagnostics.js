// Diagnostics: the redacted /diagnostics document, pretty-printed, plus
// health and readiness.

import { get } from '../api.js';
import { h, mount, section, toast, showError, saveBlob } from '../ui.js';

export async function render(root) {
  const summary = h('div', { class: 'stats' });
  const pre = h('pre', { class: 'json', tabindex: '0', 'aria-label': 'Diagnostics JSON' }, 'Loading…');
  let doc = null;
  const reload = h('button', { type: 'button', class: 'ghost small', onclick: () => load() }, 'Reload');
  const copy = h('button', {
    type: 'button', class: 'ghost small',
    onclick: async () => {
      try { await navigator.clipboard.writeText(JSON.stringify(doc, null, 2)); toast('Copied diagnostics', 'ok'); } catch { toast('Copy failed: the browser denied clipboard access', 'error'); }
    },
  }, 'Copy');
  const save = h('button', {
    type: 'button', class: 'ghost small',
    onclick: () => saveBlob(new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' }), `stacyvm-diagnostics-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
  }, 'Download');

  mount(root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Diagnostics'), h('div', { class: 'head-actions' }, reload, copy, save)),
    summary,
    section('Redacted diagnostics', h('p', { class: 'muted small' }, 'Safe to attach to a bug report: the server redacts API keys, credentials, provider secrets and environment values.'), pre));

  async function load() {
    try {
      const [d, health, ready] = await Promise.all([
        get('diagnostics'),
        get('health').catch(() => null),
        get('ready').catch((e) => ({ status: e.status === 503 ? 'not_ready' : 'unknown' })),
      ]);
      doc = d;
      const stat = (label, value, cls = '') => h('div', { class: `stat ${cls}` }, h('span', { class: 'stat-value small-value' }, String(value ?? '—')), h('span', { class: 'stat-label' }, label));
      mount(summary,
        stat('version', d?.build?.version || health?.version),
        stat('uptime', health?.uptime || d?.process?.uptime),
        stat('readiness', ready?.status, ready?.status === 'ready' ? 'state-running' : 'state-error'),
        stat('store', d?.store ? (d.store.healthy ? `${d.store.driver || 'ok'} · ${d.store.latency_ms ?? '?'} ms` : 'unhealthy') : '—'));
      pre.replaceChildren(highlight(d));
    } catch (e) { pre.textContent = e.readable || e.message; showError(e, 'diagnostics'); }
  }
  await load();
  return null;
}

/** JSON with spans for keys/strings/numbers (built as nodes, never innerHTML). */
function highlight(value) {
  const text = JSON.stringify(value, null, 2) || '';
  const frag = document.createDocumentFragment();
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (let m; (m = re.exec(text));) {
    frag.append(text.slice(last, m.index));
    const cls = m[1] ? (m[2] ? 'j-key' : 'j-str') : m[3] ? 'j-lit' : 'j-num';
    frag.append(h('span', { class: cls }, m[1] || m[3] || m[4]));
    if (m[2]) frag.append(m[2]);
    last = re.lastIndex;
  }
  frag.append(text.slice(last));
  return frag;
}
