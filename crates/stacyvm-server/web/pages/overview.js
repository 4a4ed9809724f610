// Overview: sandbox counts, provider health, operation latency and error
// rates (from GET /metrics), and the live audit feed.

import { get } from '../api.js';
import { barChart, sparkline } from '../charts.js';
import { h, mount, section, empty, healthBadge, fmtMs, every, showError } from '../ui.js';
import { eventItem } from './events.js';

const POLL_MS = 5000;
const STATES = ['creating', 'running', 'paused', 'unhealthy', 'expired', 'destroying', 'error'];

export async function render(root, _params, { liveEvents }) {
  const counts = h('div', { class: 'stats', 'aria-live': 'off' });
  const provs = h('div');
  const ops = h('div');
  const feedList = h('ol', { class: 'event-list', 'aria-label': 'Recent events' });
  const activeHistory = [];
  const updated = h('span', { class: 'muted small' });

  mount(root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), updated),
    section('Sandboxes', counts),
    h('div', { class: 'grid-2' },
      section('Providers', provs),
      section('Recent events', feedList, h('p', {}, h('a', { href: '#/events' }, 'All events →')))),
    section('Operations', ops));

  let failed = false;
  async function refresh() {
    let metrics;
    let providers;
    try {
      [metrics, providers] = await Promise.all([get('metrics'), get('providers').catch(() => null)]);
      failed = false;
    } catch (e) {
      if (!failed) showError(e, 'metrics');
      failed = true;
      return;
    }
    const sb = metrics.sandboxes || {};
    activeHistory.push(sb.active ?? 0);
    if (activeHistory.length > 60) activeHistory.shift();
    renderCounts(counts, sb, activeHistory);
    renderProviders(provs, providers || metrics.providers?.items || []);
    renderOps(ops, metrics.operations || []);
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  const recent = liveEvents.recent().slice(-15).reverse();
  if (!recent.length) feedList.append(h('li', { class: 'empty' }, 'No events yet. They appear here as they happen.'));
  for (const ev of recent) feedList.append(eventItem(ev, true));
  let soon = null;
  const unlisten = liveEvents.listen((ev) => {
    // Lifecycle events change the counts: refresh now rather than at the next poll.
    if (/^sandbox\./.test(ev.type || '') && !soon) soon = setTimeout(() => { soon = null; refresh(); }, 300);
    feedList.querySelector('.empty')?.remove();
    feedList.prepend(eventItem(ev, true));
    while (feedList.children.length > 15) feedList.lastChild.remove();
  });

  await refresh();
  const stop = every(POLL_MS, refresh);
  return () => { stop(); unlisten(); clearTimeout(soon); };
}

function renderCounts(el, sb, history) {
  const byState = sb.by_state || {};
  const byProvider = sb.by_provider || {};
  const card = (label, value, extra, cls = '') => h('div', { class: `stat ${cls}` },
    h('span', { class: 'stat-value' }, String(value ?? 0)), h('span', { class: 'stat-label' }, label), extra);
  const states = [...new Set([...STATES, ...Object.keys(byState)])].filter((s) => s !== 'destroyed');
  mount(el,
    card('active', sb.active, sparkline(history, { label: 'active sandboxes over the last polls' }), 'primary'),
    card('total', sb.total),
    states.map((s) => card(s, byState[s] || 0, null, `state-${s}`)),
    Object.keys(byProvider).length
      ? h('div', { class: 'stat wide' },
        h('span', { class: 'stat-label' }, 'by provider'),
        h('ul', { class: 'chips' }, Object.entries(byProvider).map(([p, n]) => h('li', {}, h('strong', {}, String(n)), ` ${p}`))))
      : null);
}

function renderProviders(el, list) {
  if (!list.length) { mount(el, empty('No providers configured.')); return; }
  mount(el, h('table', { class: 'table' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Provider'), h('th', { scope: 'col' }, 'Health'), h('th', { scope: 'col', class: 'num' }, 'Latency'))),
    h('tbody', {}, list.map((p) => h('tr', {},
      h('th', { scope: 'row' }, p.name, p.default ? h('span', { class: 'tag' }, 'default') : null),
      h('td', {}, healthBadge(p.healthy), p.error ? h('div', { class: 'error-text small' }, p.error) : null),
      h('td', { class: 'num' }, p.latency_ms !== undefined ? `${p.latency_ms} ms` : '—'))))));
}

/** p50/p99 when the server has histograms, otherwise avg/max. */
function latencyPair(op) {
  const p50 = op.latency_p50_ms ?? op.p50_ms ?? op.latency_ms?.p50;
  const p99 = op.latency_p99_ms ?? op.p99_ms ?? op.latency_ms?.p99;
  if (p50 !== undefined || p99 !== undefined) return { a: p50 ?? null, b: p99 ?? null, names: ['p50', 'p99'] };
  return { a: op.latency_avg_ms ?? null, b: op.latency_max_ms ?? null, names: ['avg', 'max'] };
}

function renderOps(el, ops) {
  const used = ops.filter((o) => (o.success_total || 0) + (o.failure_total || 0) + (o.latency_count || 0) > 0);
  if (!used.length) { mount(el, empty('No operations recorded yet.')); return; }
  used.sort((x, y) => (x.operation + x.provider).localeCompare(y.operation + y.provider));
  const label = (o) => `${o.operation} · ${o.provider}`;
  const pairs = used.map(latencyPair);
  // Draw at the real pixel width so labels stay legible on a phone.
  const full = el.clientWidth || 1000;
  const width = window.matchMedia('(max-width: 820px)').matches ? full : (full - 16) / 2;
  const names = pairs.find((p) => p.names[0] === 'p50')?.names || pairs[0].names;
  const latency = barChart({
    label: `operation latency ${names.join(' and ')} in milliseconds`,
    rows: used.map((o, i) => ({ label: label(o), values: [pairs[i].a, pairs[i].b] })),
    series: [{ name: names[0], class: 'a' }, { name: names[1], class: 'b' }],
    format: fmtMs,
    width,
  });
  const rate = (o) => {
    const total = (o.success_total || 0) + (o.failure_total || 0);
    return total ? (o.failure_total || 0) / total : 0;
  };
  const errors = barChart({
    label: 'operation error rate in percent',
    rows: used.map((o) => ({ label: label(o), values: [rate(o) * 100] })),
    series: [{ name: 'error rate', class: 'err' }],
    format: (v) => `${v.toFixed(v && v < 1 ? 2 : 0)}%`,
    max: 100,
    width,
  });
  mount(el,
    h('div', { class: 'grid-2' },
      h('figure', { class: 'chart-box' }, h('figcaption', {}, `Latency (${names.join(' / ')})`,
        h('span', { class: 'legend' }, h('i', { class: 'a' }), names[0], h('i', { class: 'b' }), names[1])), latency),
      h('figure', { class: 'chart-box' }, h('figcaption', {}, 'Error rate'), errors)),
    h('details', {}, h('summary', {}, 'Table'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, ['Operation', 'Provider', 'OK', 'Failed', `${names[0]}`, `${names[1]}`, 'Last error']
          .map((t, i) => h('th', { scope: 'col', class: i >= 2 && i <= 5 ? 'num' : null }, t)))),
        h('tbody', {}, used.map((o, i) => h('tr', {},
          h('td', {}, o.operation), h('td', {}, o.provider),
          h('td', { class: 'num' }, String(o.success_total ?? 0)),
          h('td', { class: 'num' }, String(o.failure_total ?? 0)),
          h('td', { class: 'num' }, fmtMs(pairs[i].a)), h('td', { class: 'num' }, fmtMs(pairs[i].b)),
          h('td', { class: 'error-text small' }, o.last_error || ''))))))));
}
