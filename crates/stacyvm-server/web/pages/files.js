// File browser inside a sandbox: list, view, upload (PUT raw bytes),
// download, delete.

import { get, put, del } from '../api.js';
import { h, mount, section, fmtBytes, timeEl, toast, showError, confirmDialog, saveBlob, empty, field } from '../ui.js';

const VIEW_LIMIT = 512 * 1024;

function join(dir, name) {
  return `${dir.replace(/\/+$/, '')}/${name}`;
}

function parent(path) {
  const p = path.replace(/\/+$/, '');
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

export async function renderFiles(root, id) {
  const enc = encodeURIComponent(id);
  let cwd = sessionStorage.getItem(`stacyvm.cwd.${id}`) || '/';
  const pathInput = h('input', { name: 'path', class: 'mono', spellcheck: 'false', value: cwd });
  const listing = h('div', { class: 'table-wrap' });
  const viewer = h('div', { class: 'file-view' });
  const fileInput = h('input', { type: 'file', name: 'file', multiple: true });
  const upName = h('input', { name: 'target', class: 'mono', spellcheck: 'false', placeholder: 'default: the file\'s own name' });

  const nav = h('form', { class: 'path-bar', 'aria-label': 'Go to directory' },
    field('Directory', pathInput),
    h('div', { class: 'field end' }, h('button', { type: 'submit', class: 'ghost small' }, 'Open')),
    h('div', { class: 'field end' }, h('button', { type: 'button', class: 'ghost small', onclick: () => open(parent(cwd)) }, 'Up')));
  nav.addEventListener('submit', (e) => { e.preventDefault(); open(pathInput.value.trim() || '/'); });

  const upload = h('form', { class: 'upload-form', 'aria-label': 'Upload files' },
    field('File', fileInput), field('Save as', upName, 'A name in the current directory, or an absolute path.'),
    h('div', { class: 'field end' }, h('button', { type: 'submit', class: 'primary small' }, 'Upload')));
  upload.addEventListener('submit', async (e) => {
    e.preventDefault();
    const files = [...fileInput.files];
    if (!files.length) { toast('Choose a file to upload', 'warn'); fileInput.focus(); return; }
    for (const [i, f] of files.entries()) {
      const name = files.length === 1 && upName.value.trim() ? upName.value.trim() : f.name;
      const path = name.startsWith('/') ? name : join(cwd, name);
      try {
        await put(`sandboxes/${enc}/files`, f, { query: { path }, headers: { 'Content-Type': 'application/octet-stream' } });
        toast(`Uploaded ${path} (${fmtBytes(f.size)})`, 'ok');
      } catch (err) { showError(err, `upload ${path}`); }
      if (i === files.length - 1) { fileInput.value = ''; upName.value = ''; }
    }
    open(cwd);
  });

  mount(root,
    section('Files', nav, listing),
    h('div', { class: 'grid-2' }, section('Upload', upload), section('Viewer', viewer)));
  mount(viewer, empty('Select a file to view it.'));

  let openSeq = 0;
  async function open(dir) {
    const seq = ++openSeq;
    try {
      const items = (await get(`sandboxes/${enc}/files/list`, { query: { path: dir } })) || [];
      if (seq !== openSeq) return; // a newer listing was asked for meanwhile
      cwd = dir;
      pathInput.value = dir;
      sessionStorage.setItem(`stacyvm.cwd.${id}`, dir);
      items.sort((a, b) => (b.is_dir - a.is_dir) || a.name.localeCompare(b.name));
      mount(listing, items.length ? table(items) : empty(`${dir} is empty.`));
    } catch (e) {
      if (seq === openSeq) mount(listing, h('p', { class: 'notice error' }, e.readable || e.message));
    }
  }

  function table(items) {
    return h('table', { class: 'table files' },
      h('thead', {}, h('tr', {}, ['Name', 'Size', 'Mode', 'Modified', 'Actions'].map((t, i) => h('th', { scope: 'col', class: i === 1 ? 'num' : null }, t)))),
      h('tbody', {}, items.map((f) => {
        const path = f.path || join(cwd, f.name);
        return h('tr', { dataset: { path } },
          h('th', { scope: 'row' }, f.is_dir
            ? h('button', { type: 'button', class: 'link mono', onclick: () => open(path) }, `${f.name}/`)
            : h('button', { type: 'button', class: 'link mono', onclick: () => view(path, f.size) }, f.name)),
          h('td', { class: 'num' }, f.is_dir ? '—' : fmtBytes(f.size)),
          h('td', { class: 'mono' }, f.mode || ''),
          h('td', {}, timeEl(f.mod_time)),
          h('td', { class: 'actions' },
            f.is_dir ? null : h('button', { type: 'button', class: 'small ghost', 'aria-label': `Download ${path}`, onclick: () => download(path, f.name) }, 'Download'),
            h('button', { type: 'button', class: 'small danger-ghost', 'aria-label': `Delete ${path}`, onclick: () => remove(path, f.is_dir) }, 'Delete')));
      })));
  }

  async function fetchFile(path) {
    return get(`sandboxes/${enc}/files`, { query: { path }, as: 'blob' });
  }

  async function view(path, size) {
    mount(viewer, h('p', { class: 'muted' }, `Loading ${path}…`));
    try {
      const blob = await fetchFile(path);
      const head = await blob.slice(0, VIEW_LIMIT).arrayBuffer();
      const bytes = new Uint8Array(head);
      const binary = bytes.slice(0, 8000).includes(0);
      let text = '';
      if (!binary) text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
      mount(viewer,
        h('div', { class: 'section-tools' }, h('span', { class: 'mono' }, path), h('span', { class: 'muted small' }, fmtBytes(size ?? blob.size)),
          h('button', { type: 'button', class: 'small ghost', onclick: () => saveBlob(blob, path.split('/').pop()) }, 'Download')),
        binary
          ? empty('Binary file — download it to see its content.')
          : h('pre', { class: 'console file-content', tabindex: '0', 'aria-label': `Content of ${path}`, 'data-testid': 'file-content' },
            text, blob.size > VIEW_LIMIT ? `\n… (${fmtBytes(blob.size - VIEW_LIMIT)} more, download to see all)` : ''));
    } catch (e) { mount(viewer, h('p', { class: 'notice error' }, e.readable || e.message)); }
  }

  async function download(path, name) {
    try { saveBlob(await fetchFile(path), name); } catch (e) { showError(e, `download ${path}`); }
  }

  async function remove(path, isDir) {
    if (!await confirmDialog(`Delete ${path}?`, isDir ? 'The directory and everything in it will be deleted.' : 'The file will be deleted.', 'Delete')) return;
    try {
      await del(`sandboxes/${enc}/files`, { query: { path, recursive: isDir ? 'true' : undefined } });
      toast(`Deleted ${path}`, 'ok');
      open(cwd);
    } catch (e) { showError(e, `delete ${path}`); }
  }

  await open(cwd);
  return null;
}
