// Templates: list, create, edit, delete, spawn from a template.

import { get, post, put, del } from '../api.js';
import { h, mount, field, select, toast, showError, confirmDialog, promptDialog, empty, timeEl } from '../ui.js';

export async function render(root) {
  const providers = await get('providers').catch(() => []);
  const list = h('div', { class: 'table-wrap' });
  const editor = h('div');
  const newBtn = h('button', { type: 'button', class: 'primary small', onclick: () => edit(null) }, 'New template');

  mount(root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Templates'), newBtn),
    editor,
    h('section', { class: 'card', 'aria-label': 'Template list' }, list));

  async function refresh() {
    try {
      const items = (await get('templates')) || [];
      items.sort((a, b) => a.name.localeCompare(b.name));
      mount(list, items.length ? table(items) : empty('No templates yet. A template stores spawn settings under a name.'));
    } catch (e) { mount(list, h('p', { class: 'notice error' }, e.readable || e.message)); }
  }

  function table(items) {
    return h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, ['Name', 'Image', 'Provider', 'Memory', 'vCPUs', 'TTL', 'Updated', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, items.map((t) => h('tr', {},
        h('th', { scope: 'row', class: 'mono' }, t.name),
        h('td', { class: 'mono wrap' }, t.image || '—'),
        h('td', {}, t.provider || 'default'),
        h('td', {}, t.memory_mb ? `${t.memory_mb} MiB` : '—'),
        h('td', {}, t.vcpus ? String(t.vcpus) : '—'),
        h('td', {}, t.ttl || '—'),
        h('td', {}, timeEl(t.updated_at || t.created_at)),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'small primary', 'aria-label': `Spawn from ${t.name}`, onclick: () => spawn(t) }, 'Spawn'),
          h('button', { type: 'button', class: 'small ghost', 'aria-label': `Edit ${t.name}`, onclick: () => edit(t) }, 'Edit'),
          h('button', { type: 'button', class: 'small danger-ghost', 'aria-label': `Delete ${t.name}`, onclick: () => remove(t) }, 'Delete'))))));
  }

  async function spawn(t) {
    const ttl = await promptDialog({ title: `Spawn from ${t.name}`, label: 'TTL (optional)', value: '', hint: `Leave empty for the template's TTL (${t.ttl || 'server default'}).`, placeholder: t.ttl || '30m', required: false });
    if (ttl === null) return;
    try {
      const sb = await post(`templates/${encodeURIComponent(t.name)}/spawn`, ttl ? { ttl } : {});
      toast(`Spawned ${sb.id} from ${t.name}`, 'ok');
      location.hash = `#/sandboxes/${sb.id}`;
    } catch (e) { showError(e, `spawn from ${t.name}`); }
  }

  async function remove(t) {
    if (!await confirmDialog(`Delete template ${t.name}?`, 'Sandboxes already spawned from it are not affected.', 'Delete')) return;
    try { await del(`templates/${encodeURIComponent(t.name)}`); toast(`Deleted ${t.name}`, 'ok'); refresh(); } catch (e) { showError(e, `delete ${t.name}`); }
  }

  function edit(t) {
    const isNew = !t;
    t = t || {};
    const name = h('input', { name: 'name', required: true, value: t.name || '', readonly: !isNew, spellcheck: 'false', pattern: '[A-Za-z0-9._\\-]+' });
    const meta = h('textarea', { name: 'metadata', rows: '3', class: 'mono', spellcheck: 'false' }, t.metadata && Object.keys(t.metadata).length ? JSON.stringify(t.metadata, null, 2) : '');
    const form = h('form', { class: 'card', 'aria-label': isNew ? 'New template' : `Edit ${t.name}` },
      h('h2', {}, isNew ? 'New template' : `Edit ${t.name}`),
      h('div', { class: 'form-grid' },
        field('Name', name),
        field('Image', h('input', { name: 'image', value: t.image || '', spellcheck: 'false', placeholder: 'alpine:latest' })),
        field('Provider', select('provider', [['', 'Server default'], ...providers.map((p) => p.name)], t.provider || '')),
        field('TTL', h('input', { name: 'ttl', value: t.ttl || '', spellcheck: 'false', placeholder: '30m' })),
        field('Memory (MiB)', h('input', { name: 'memory_mb', type: 'number', min: '1', value: t.memory_mb || '' })),
        field('vCPUs', h('input', { name: 'vcpus', type: 'number', min: '1', value: t.vcpus || '' })),
        field('Metadata (JSON object)', meta)),
      h('div', { class: 'form-actions' },
        h('button', { type: 'button', class: 'ghost', onclick: () => mount(editor) }, 'Cancel'),
        h('button', { type: 'submit', class: 'primary' }, isNew ? 'Create' : 'Save')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = form.elements;
      const body = { name: f.name.value.trim() };
      for (const k of ['image', 'provider', 'ttl']) if (f[k].value.trim()) body[k] = f[k].value.trim();
      for (const k of ['memory_mb', 'vcpus']) if (f[k].value.trim()) body[k] = Number(f[k].value);
      if (meta.value.trim()) {
        try { body.metadata = JSON.parse(meta.value); } catch { toast('Metadata must be a JSON object', 'error'); meta.focus(); return; }
      }
      try {
        if (isNew) await post('templates', body); else await put(`templates/${encodeURIComponent(body.name)}`, body);
        toast(`${isNew ? 'Created' : 'Saved'} template ${body.name}`, 'ok');
        mount(editor);
        refresh();
      } catch (err) { showError(err, isNew ? 'create template' : `save ${body.name}`); }
    });
    mount(editor, form);
    (isNew ? name : form.elements.image).focus();
  }

  await refresh();
  return null;
}
