// Events: the live audit stream with a type and sandbox filter.

import { h, mount, timeEl, field, select } from '../ui.js';

const TYPES = [
  'sandbox.created', 'sandbox.running', 'sandbox.expired', 'sandbox.destroyed', 'sandbox.error',
  'exec.started', 'exec.completed', 'exec.failed', 'exec.timeout', 'file.written', 'file.read',
  'operation.failed', 'resource.limit', 'provider.failed', 'provider.recovered', 'reconcile.action',
  'spawn.queued', 'spawn.dequeued', 'spawn.queue_timeout', 'quota.saved', 'quota.deleted',
];

function kindClass(type) {
  if (/failed|error|timeout|limit/.test(type)) return 'bad';
  if (/destroyed|expired/.test(type)) return 'warn';
  if (/created|running|completed|recovered/.test(type)) return 'ok';
  return '';
}

function summary(data) {
  if (!data || typeof data !== 'object') return '';
  return Object.entries(data)
    .filter(([, v]) => v !== null && v !== '' && typeof v !== 'object')
    .map(([k, v]) => `${k}=${v}`).join(' ');
}

/** One event as a list item; `compact` drops the data summary. */
export function eventItem(ev, compact = false) {
  return h('li', { class: 'event', dataset: { type: ev.type || '' } },
    h('span', { class: `badge ev ${kindClass(ev.type || '')}` }, ev.type || 'event'),
    ev.sandbox_id ? h('a', { href: `#/sandboxes/${encodeURIComponent(ev.sandbox_id)}`, class: 'mono' }, ev.sandbox_id) : null,
    compact ? null : h('span', { class: 'event-data mono' }, summary(ev.data)),
    h('span', { class: 'event-time' }, timeEl(ev.timestamp)));
}

export async function render(root, _params, { liveEvents }) {
  const typeSel = select('type', [['', 'All types'], ...TYPES], '');
  const sbInput = h('input', { name: 'sandbox', placeholder: 'sb-…', spellcheck: 'false' });
  const list = h('ol', { class: 'event-list full', 'aria-label': 'Events, newest first' });
  const count = h('span', { class: 'muted small', 'aria-live': 'polite' });
  let paused = false;
  const pauseBtn = h('button', { type: 'button', class: 'ghost small', 'aria-pressed': 'false' }, 'Pause');

  const matches = (ev) => (!typeSel.value || ev.type === typeSel.value)
    && (!sbInput.value.trim() || (ev.sandbox_id || '').includes(sbInput.value.trim()));

  function redraw() {
    const evs = liveEvents.recent().reverse().filter(matches);
    mount(list, evs.length ? evs.map((e) => eventItem(e)) : h('li', { class: 'empty' }, 'No matching events yet — waiting for the live stream.'));
    count.textContent = `${evs.length} shown`;
  }

  typeSel.addEventListener('change', redraw);
  sbInput.addEventListener('input', redraw);
  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    pauseBtn.setAttribute('aria-pressed', String(paused));
    if (!paused) redraw();
  });

  mount(root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Events'), count),
    h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter events', onsubmit: (e) => e.preventDefault() },
      field('Type', typeSel), field('Sandbox', sbInput), h('div', { class: 'field end' }, pauseBtn)),
    h('section', { class: 'card', 'aria-label': 'Event list' }, list));
  redraw();

  return liveEvents.listen((ev) => {
    if (paused || !matches(ev)) return;
    list.querySelector('.empty')?.remove();
    list.prepend(eventItem(ev));
    while (list.children.length > 300) list.lastChild.remove();
    count.textContent = `${list.children.length} shown`;
  });
}
