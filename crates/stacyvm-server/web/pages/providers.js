// Providers: health, capabilities and non-secret config; connectivity test.

import { get, post } from '../api.js';
import { h, mount, section, healthBadge, timeEl, toast, showError, empty } from '../ui.js';

export async function render(root) {
  const list = h('div', { class: 'provider-grid' });
  const testBtn = h('button', { type: 'button', class: 'primary small' }, 'Test all providers');
  const result = h('div', { 'aria-live': 'polite' });

  mount(root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Providers'), testBtn),
    result, list);

  testBtn.addEventListener('click', async () => {
    testBtn.disabled = true;
    testBtn.textContent = 'Testing…';
    try {
      const r = (await post('providers/test', {})) || {};
      const entries = Object.entries(r);
      mount(result, h('div', { class: 'card' }, h('h2', {}, 'Test result'),
        h('ul', { class: 'chips' }, entries.map(([n, ok]) => h('li', { class: ok ? 'ok' : 'bad' }, `${n}: ${ok ? 'reachable' : 'failed'}`)))));
      const bad = entries.filter(([, ok]) => !ok).length;
      toast(bad ? `${bad} provider(s) failed the test` : 'All providers passed', bad ? 'error' : 'ok');
      refresh();
    } catch (e) { showError(e, 'provider test'); } finally {
      testBtn.disabled = false;
      testBtn.textContent = 'Test all providers';
    }
  });

  async function refresh() {
    let items;
    try { items = (await get('providers')) || []; } catch (e) { mount(list, h('p', { class: 'notice error' }, e.readable || e.message)); return; }
    if (!items.length) { mount(list, empty('No providers configured.')); return; }
    const details = await Promise.all(items.map((p) => get(`providers/${encodeURIComponent(p.name)}`).catch(() => null)));
    mount(list, items.map((p, i) => card(p, details[i])));
  }

  await refresh();
  return null;
}

function card(p, d) {
  const config = d && d.config && Object.keys(d.config).length ? d.config : null;
  return section(p.name,
    h('p', {}, healthBadge(p.healthy), p.default ? h('span', { class: 'tag' }, 'default') : null),
    p.error ? h('p', { class: 'notice error' }, p.error) : null,
    h('dl', { class: 'kv' },
      h('dt', {}, 'Health latency'), h('dd', {}, p.latency_ms !== undefined ? `${p.latency_ms} ms` : '—'),
      h('dt', {}, 'Last checked'), h('dd', {}, timeEl(p.last_checked)),
      d && d.sandbox_count !== undefined ? [h('dt', {}, 'Sandboxes'), h('dd', {}, String(d.sandbox_count))] : null,
      p.runtime_count !== undefined ? [h('dt', {}, 'Runtimes'), h('dd', {}, String(p.runtime_count))] : null),
    p.capabilities && p.capabilities.length
      ? [h('h3', {}, 'Capabilities'), h('ul', { class: 'chips' }, p.capabilities.map((c) => h('li', {}, c)))] : null,
    config ? h('details', {}, h('summary', {}, 'Configuration'), h('pre', { class: 'json' }, JSON.stringify(config, null, 2))) : null);
}
