// Sandboxes: filterable list, spawn form, extend TTL and destroy.

import { get, post, del } from '../api.js';
import {
  h, mount, field, select, stateBadge, timeEl, toast, showError, confirmDialog,
  promptDialog, empty, every,
} from '../ui.js';

const STATES = ['creating', 'running', 'paused', 'unhealthy', 'expired', 'destroying', 'error'];

/** Asks for a TTL and extends; resolves the updated sandbox or null. */
export async function extendSandbox(id) {
  const ttl = await promptDialog({
    title: `Extend ${id}`, label: 'New time to live (from now)', value: '1h',
    hint: 'Go-style duration, e.g. 30m, 1h, 1h30m. Capped by the server\'s max TTL.',
  });
  if (!ttl) return null;
  try {
    const sb = await post(`sandboxes/${encodeURIComponent(id)}/extend`, { ttl });
    toast(`${id} now expires at ${new Date(sb.expires_at).toLocaleString()}`, 'ok');
    return sb;
  } catch (e) { showError(e, `extend ${id}`); return null; }
}

/** Pauses (`pause`) or resumes (`resume`) a sandbox; resolves the
 * updated sandbox, or null on failure (shown as a toast). */
export async function pauseResume(id, action) {
  try {
    const sb = await post(`sandboxes/${encodeURIComponent(id)}/${action}`, {});
    toast(`${id} ${sb.state}`, 'ok');
    return sb;
  } catch (e) { showError(e, `${action} ${id}`); return null; }
}

/** A Pause or Resume button for a sandbox in `state`, or null when
 * neither applies. */
export function pauseButton(s, done, cls = 'small ghost') {
  const action = s.state === 'paused' ? 'resume' : (s.state === 'running' || s.state === 'unhealthy') ? 'pause' : null;
  if (!action) return null;
  const label = action === 'pause' ? 'Pause' : 'Resume';
  return h('button', { type: 'button', class: cls, 'aria-label': `${label} ${s.id}`, onclick: async () => { const n = await pauseResume(s.id, action); if (n) done(n); } }, label);
}

/** Confirms and destroys; resolves true when destroyed. */
export async function destroySandbox(id) {
  const ok = await confirmDialog(`Destroy ${id}?`,
    'The sandbox and everything in it will be deleted. This cannot be undone.', 'Destroy');
  if (!ok) return false;
  try {
    await del(`sandboxes/${encodeURIComponent(id)}`);
    toast(`${id} destroyed`, 'ok');
    return true;
  } catch (e) { showError(e, `destroy ${id}`); return false; }
}

function num(form, name) {
  const v = form.elements[name].value.trim();
  return v === '' ? undefined : Number(v);
}

function str(form, name) {
  const v = form.elements[name].value.trim();
  return v === '' ? undefined : v;
}

/** The spawn form; `onSpawned(sandbox)` after success. */
export function spawnForm(providers, templates, onSpawned) {
  const providerSel = select('provider',
    [['', 'Server default'], ...providers.map((p) => [p.name, `${p.name}${p.healthy ? '' : ' (unhealthy)'}${p.default ? ' — default' : ''}`])], '');
  const templateSel = select('template', [['', 'None'], ...templates.map((t) => [t.name, t.name])], '');
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Spawn sandbox');
  const form = h('form', { class: 'spawn-form', 'aria-label': 'Spawn a sandbox' },
    h('div', { class: 'form-grid' },
      field('Image', h('input', { name: 'image', placeholder: 'alpine:latest (server default if empty)', spellcheck: 'false' })),
      field('Provider', providerSel),
      field('Template', templateSel, 'Template values apply; fields set here override them.'),
      field('TTL', h('input', { name: 'ttl', placeholder: 'e.g. 30m, 1h', pattern: '^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$', spellcheck: 'false' })),
      field('Memory (MiB)', h('input', { name: 'memory_mb', type: 'number', min: '1', step: '1', inputmode: 'numeric' })),
      field('vCPUs', h('input', { name: 'vcpus', type: 'number', min: '1', step: '1', inputmode: 'numeric' })),
      field('Owner', h('input', { name: 'owner_id', placeholder: 'optional', spellcheck: 'false', maxlength: '128' }))),
    h('div', { class: 'form-actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {
      image: str(form, 'image'), provider: str(form, 'provider'), template: str(form, 'template'),
      ttl: str(form, 'ttl'), memory_mb: num(form, 'memory_mb'), vcpus: num(form, 'vcpus'),
      owner_id: str(form, 'owner_id'),
    };
    submit.disabled = true;
    submit.textContent = 'Spawning…';
    try {
      const sb = await post('sandboxes', body);
      toast(`Spawned ${sb.id} (${sb.state})`, 'ok');
      onSpawned(sb);
    } catch (err) {
      showError(err, 'spawn');
    } finally {
      submit.disabled = false;
      submit.textContent = 'Spawn sandbox';
    }
  });
  return form;
}

export async function render(root, _params, { liveEvents }) {
  const [providers, templates] = await Promise.all([
    get('providers').catch(() => []), get('templates').catch(() => []),
  ]);
  let all = [];
  const stateSel = select('state', [['', 'All states'], ...STATES], '');
  const provSel = select('provider', [['', 'All providers'], ...providers.map((p) => p.name)], '');
  const ownerInput = h('input', { name: 'owner', placeholder: 'owner id', spellcheck: 'false' });
  const body = h('div', { class: 'table-wrap' });
  const count = h('span', { class: 'muted small', 'aria-live': 'polite' });

  const spawn = h('details', { class: 'card spawn' },
    h('summary', {}, h('span', { class: 'summary-title' }, 'Spawn a sandbox')),
    spawnForm(providers || [], templates || [], (sb) => { location.hash = `#/sandboxes/${sb.id}`; }));

  const prune = h('button', {
    type: 'button', class: 'ghost small',
    onclick: async () => {
      if (!await confirmDialog('Prune expired sandboxes?', 'All sandboxes past their expiry are destroyed now.', 'Prune')) return;
      try { const r = await del('sandboxes'); toast(`Pruned ${r?.pruned ?? 0} sandbox(es)`, 'ok'); refresh(); } catch (e) { showError(e, 'prune'); }
    },
  }, 'Prune expired');

  mount(root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Sandboxes'), count, prune),
    spawn,
    h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter sandboxes', onsubmit: (e) => e.preventDefault() },
      field('State', stateSel), field('Provider', provSel), field('Owner', ownerInput)),
    h('section', { class: 'card', 'aria-label': 'Sandbox list' }, body));

  function draw() {
    const owner = ownerInput.value.trim().toLowerCase();
    const rows = all.filter((s) => (!stateSel.value || s.state === stateSel.value)
      && (!provSel.value || s.provider === provSel.value)
      && (!owner || (s.owner_id || '').toLowerCase().includes(owner)));
    count.textContent = `${rows.length} of ${all.length}`;
    if (!rows.length) {
      mount(body, empty(all.length ? 'No sandbox matches the filters.' : 'No sandboxes yet. Spawn one above.'));
      return;
    }
    mount(body, h('table', { class: 'table sandboxes' },
      h('thead', {}, h('tr', {}, ['ID', 'State', 'Provider', 'Image', 'Owner', 'Created', 'Expires', 'Actions']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((s) => h('tr', { dataset: { id: s.id } },
        h('th', { scope: 'row' }, h('a', { href: `#/sandboxes/${encodeURIComponent(s.id)}`, class: 'mono' }, s.id)),
        h('td', {}, stateBadge(s.state)),
        h('td', {}, s.provider || '—'),
        h('td', { class: 'mono wrap' }, s.image || '—'),
        h('td', {}, s.owner_id || '—'),
        h('td', {}, timeEl(s.created_at)),
        h('td', {}, timeEl(s.expires_at)),
        h('td', { class: 'actions' },
          h('a', { class: 'btn small ghost', href: `#/sandboxes/${encodeURIComponent(s.id)}/terminal`, 'aria-label': `Terminal for ${s.id}` }, 'Terminal'),
          pauseButton(s, () => refresh()),
          h('button', { type: 'button', class: 'small ghost', 'aria-label': `Extend ${s.id}`, onclick: async () => { if (await extendSandbox(s.id)) refresh(); } }, 'Extend'),
          h('button', { type: 'button', class: 'small danger-ghost', 'aria-label': `Destroy ${s.id}`, onclick: async () => { if (await destroySandbox(s.id)) refresh(); } }, 'Destroy')))))));
  }

  let failed = false;
  async function refresh() {
    try {
      all = (await get('sandboxes')) || [];
      all.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
      failed = false;
      draw();
    } catch (e) {
      if (!failed) { showError(e, 'list sandboxes'); mount(body, h('p', { class: 'notice error' }, e.readable || e.message)); }
      failed = true;
    }
  }
  for (const el of [stateSel, provSel]) el.addEventListener('change', draw);
  ownerInput.addEventListener('input', draw);
  await refresh();
  const stop = every(5000, refresh);
  let soon = null;
  const unlisten = liveEvents.listen((ev) => {
    if (/^sandbox\./.test(ev.type || '') && !soon) soon = setTimeout(() => { soon = null; refresh(); }, 300);
  });
  return () => { stop(); unlisten(); clearTimeout(soon); };
}
