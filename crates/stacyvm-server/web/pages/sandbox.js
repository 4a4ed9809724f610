// One sandbox: metadata, resource usage and console log; terminal and
// one-shot exec; file browser. Tabs are routes (#/sandboxes/<id>/<tab>).

import { get, post } from '../api.js';
import {
  h, mount, section, stateBadge, timeEl, fmtTime, fmtBytes, empty, showError, every, field,
} from '../ui.js';
import { extendSandbox, destroySandbox, pauseButton } from './sandboxes.js';
import { openTerminal } from '../terminal.js';
import { renderFiles } from './files.js';
import { eventItem } from './events.js';

const TABS = [['overview', 'Overview'], ['terminal', 'Terminal'], ['files', 'Files']];

export async function render(root, [id, tab = 'overview'], { liveEvents }) {
  const enc = encodeURIComponent(id);
  let sb;
  try {
    sb = await get(`sandboxes/${enc}`);
  } catch (e) {
    mount(root, h('div', { class: 'page-head' }, h('h1', { class: 'mono' }, id)),
      h('p', { class: 'notice error' }, e.readable || e.message),
      h('p', {}, h('a', { href: '#/sandboxes' }, '← All sandboxes')));
    return null;
  }
  const badge = h('span', {}, stateBadge(sb.state));
  const pauseSlot = h('span');
  const panel = h('div', { class: 'tab-panel', id: 'tab-panel', role: 'region', 'aria-label': TABS.find(([t]) => t === tab)[1] });

  mount(root,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/sandboxes' }, 'Sandboxes'), ' / ', h('span', { class: 'mono' }, id)),
    h('div', { class: 'page-head' },
      h('h1', { class: 'mono' }, id), badge,
      h('div', { class: 'head-actions' },
        pauseSlot,
        h('button', { type: 'button', class: 'ghost small', onclick: async () => { const n = await extendSandbox(id); if (n) { sb = n; refreshMeta(); } } }, 'Extend TTL'),
        h('button', { type: 'button', class: 'danger small', onclick: async () => { if (await destroySandbox(id)) location.hash = '#/sandboxes'; } }, 'Destroy'))),
    h('nav', { class: 'tabs', 'aria-label': 'Sandbox sections' },
      TABS.map(([t, label]) => h('a', { href: `#/sandboxes/${enc}/${t}`, 'aria-current': t === tab ? 'page' : null }, label))),
    panel);

  const meta = h('div');
  mount(pauseSlot, pauseButton(sb, (n) => { sb = n; refreshMeta(); }));
  function refreshMeta() {
    mount(badge, stateBadge(sb.state));
    mount(pauseSlot, pauseButton(sb, (n) => { sb = n; refreshMeta(); }));
    if (tab === 'overview') mount(meta, metaList(sb));
  }

  const stops = [];
  if (tab === 'overview') {
    const logs = h('pre', { class: 'console', tabindex: '0', 'aria-label': 'Console log' }, 'Loading…');
    const usage = h('div');
    const reload = h('button', { type: 'button', class: 'ghost small', onclick: () => loadLogs() }, 'Reload');
    const evList = h('ol', { class: 'event-list', 'aria-label': `Events of ${id}` });
    const mine = (ev) => ev.sandbox_id === id;
    const recent = liveEvents.recent().filter(mine).slice(-20).reverse();
    if (recent.length) evList.append(...recent.map((e) => eventItem(e)));
    else evList.append(h('li', { class: 'empty' }, 'No events for this sandbox yet.'));
    mount(panel,
      h('div', { class: 'grid-2' }, section('Details', meta), section('Resource usage', usage)),
      section('Console log', h('div', { class: 'section-tools' }, h('span', { class: 'muted small' }, 'last 200 lines'), reload), logs),
      section('Events', evList));
    stops.push(liveEvents.listen((ev) => {
      if (!mine(ev)) return;
      evList.querySelector('.empty')?.remove();
      evList.prepend(eventItem(ev));
      while (evList.children.length > 20) evList.lastChild.remove();
      if (/^sandbox\.(running|expired|error)$/.test(ev.type || '')) {
        get(`sandboxes/${enc}`).then((n) => { sb = n; refreshMeta(); drawUsage(); }).catch(() => {});
      }
    }));
    async function loadLogs() {
      try {
        const lines = await get(`sandboxes/${enc}/logs`, { query: { lines: 200 } });
        logs.textContent = Array.isArray(lines) && lines.length ? lines.join('\n') : '(no console output)';
        logs.scrollTop = logs.scrollHeight;
      } catch (e) { logs.textContent = `Could not load logs: ${e.readable || e.message}`; }
    }
    const drawUsage = () => mount(usage, usageView(sb));
    refreshMeta(); drawUsage(); loadLogs();
    stops.push(every(5000, async () => {
      try { sb = await get(`sandboxes/${enc}`); refreshMeta(); drawUsage(); } catch { /* shown on next action */ }
    }));
  } else if (tab === 'terminal') {
    const term = h('div', { class: 'term-wrap' });
    mount(panel, section('Interactive shell', term), section('Run a command', execBox(id)));
    stops.push(await openTerminal(term, id));
  } else if (tab === 'files') {
    stops.push(await renderFiles(panel, id));
  }
  return () => stops.forEach((s) => s && s());
}

function metaList(sb) {
  const rows = [
    ['Provider', sb.provider], ['Image', sb.image], ['Memory', sb.memory_mb ? `${sb.memory_mb} MiB` : null],
    ['vCPUs', sb.vcpus], ['Owner', sb.owner_id], ['Created', sb.created_at && [fmtTime(sb.created_at), ' (', timeEl(sb.created_at), ')']],
    ['Expires', sb.expires_at && [fmtTime(sb.expires_at), ' (', timeEl(sb.expires_at), ')']],
    ['Preview domain', sb.preview_domain],
  ];
  const md = Object.entries(sb.metadata || {});
  return h('div', {},
    h('dl', { class: 'kv' }, rows.filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    md.length ? [h('h3', {}, 'Metadata'), h('dl', { class: 'kv' }, md.map(([k, v]) => [h('dt', { class: 'mono' }, k), h('dd', { class: 'mono' }, typeof v === 'string' ? v : JSON.stringify(v))]))] : null);
}

/** Resource usage if the server reports it (field name not fixed yet). */
function usageView(sb) {
  const u = sb.resource_usage || sb.usage || sb.resources;
  if (!u || typeof u !== 'object') return empty('The server reports no resource figures for this sandbox.');
  const known = {
    cpu_seconds: (v) => `${Number(v).toFixed(2)} s CPU`,
    memory_bytes: (v) => fmtBytes(v),
    pids: (v) => `${v} processes`,
  };
  return h('dl', { class: 'kv' }, Object.entries(u).map(([k, v]) => [
    h('dt', {}, k.replace(/_/g, ' ')), h('dd', {}, known[k] ? known[k](v) : String(v))]));
}

function execBox(id) {
  const cmd = h('input', { name: 'command', required: true, placeholder: 'uname -a', spellcheck: 'false', autocomplete: 'off', class: 'mono' });
  const timeout = h('input', { name: 'timeout', placeholder: '30s', spellcheck: 'false', size: '6' });
  const run = h('button', { type: 'submit', class: 'primary' }, 'Run');
  const out = h('div', { class: 'exec-result', 'aria-live': 'polite' });
  const form = h('form', { class: 'exec-form', 'aria-label': 'Run a command once' },
    h('div', { class: 'exec-row' }, field('Command', cmd), field('Timeout', timeout), h('div', { class: 'field end' }, run)), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    run.disabled = true;
    mount(out, h('p', { class: 'muted' }, 'Running…'));
    try {
      const r = await post(`sandboxes/${encodeURIComponent(id)}/exec`, { command: cmd.value, timeout: timeout.value.trim() || undefined });
      mount(out,
        h('p', { class: 'exec-meta' },
          h('span', { class: `badge ${r.exit_code === 0 ? 'ok' : 'bad'}`, 'data-testid': 'exit-code' }, `exit ${r.exit_code}`),
          r.duration ? h('span', { class: 'muted small' }, ` in ${r.duration}`) : null),
        h('div', { class: 'grid-2 tight' },
          h('div', {}, h('h3', {}, 'stdout'), h('pre', { class: 'console out', 'data-testid': 'stdout', tabindex: '0' }, r.stdout || '')),
          h('div', {}, h('h3', {}, 'stderr'), h('pre', { class: 'console err', 'data-testid': 'stderr', tabindex: '0' }, r.stderr || ''))));
    } catch (err) {
      mount(out, h('p', { class: 'notice error' }, err.readable || err.message));
      showError(err, 'exec');
    } finally { run.disabled = false; }
  });
  return form;
}
