// Entry point: hash router, navigation, API-key prompt and the shared live
// event feed that pages subscribe to.

import { onAuthRequired, getKey, setKey, subscribeEvents } from './api.js';
import { h, mount, toast } from './ui.js';
import * as overview from './pages/overview.js';
import * as sandboxes from './pages/sandboxes.js';
import * as sandbox from './pages/sandbox.js';
import * as templates from './pages/templates.js';
import * as providers from './pages/providers.js';
import * as events from './pages/events.js';
import * as diagnostics from './pages/diagnostics.js';

const routes = [
  [/^\/overview$/, overview, 'overview'],
  [/^\/sandboxes$/, sandboxes, 'sandboxes'],
  [/^\/sandboxes\/([^/]+)(?:\/(overview|terminal|files))?$/, sandbox, 'sandboxes'],
  [/^\/templates$/, templates, 'templates'],
  [/^\/providers$/, providers, 'providers'],
  [/^\/events$/, events, 'events'],
  [/^\/diagnostics$/, diagnostics, 'diagnostics'],
];

// ---- live events, shared by all pages -------------------------------------

const HISTORY = 300;
const feed = { history: [], listeners: new Set() };

/** Recent events (newest last) and a way to hear new ones. */
export const liveEvents = {
  recent: () => feed.history.slice(),
  listen(fn) { feed.listeners.add(fn); return () => feed.listeners.delete(fn); },
};

function startFeed() {
  const conn = document.getElementById('conn');
  const seen = new Set();
  return subscribeEvents({
    replay: true,
    onEvent(ev) {
      if (ev.id && seen.has(ev.id)) return;
      if (ev.id) seen.add(ev.id);
      feed.history.push(ev);
      if (feed.history.length > HISTORY) {
        const gone = feed.history.shift();
        if (gone.id) seen.delete(gone.id);
      }
      for (const fn of feed.listeners) { try { fn(ev); } catch (e) { console.error(e); } }
    },
    onStatus(s) {
      conn.textContent = s === 'live' ? 'live' : s === 'connecting' ? 'connecting…' : 'offline';
      conn.dataset.state = s;
    },
  });
}

// ---- API key prompt --------------------------------------------------------

function askKey(reason) {
  const d = document.getElementById('key-dialog');
  const input = d.querySelector('#key-input');
  d.querySelector('#key-reason').textContent =
    `${reason ? reason.charAt(0).toUpperCase() + reason.slice(1) + '. ' : ''}`
    + 'The key is kept for this browser tab only (session storage).';
  input.value = getKey();
  return new Promise((resolve) => {
    d.addEventListener('close', () => {
      const key = d.returnValue === 'ok' ? input.value.trim() : '';
      resolve(key || null);
    }, { once: true });
    d.returnValue = '';
    d.showModal();
    input.focus();
  });
}

// ---- router ---------------------------------------------------------------

let cleanup = null;
let renderSeq = 0;

async function route() {
  const path = (location.hash || '#/overview').slice(1).split('?')[0] || '/overview';
  const match = routes.map(([re, mod, nav]) => [path.match(re), mod, nav]).find(([m]) => m);
  if (!match) { location.replace('#/overview'); return; }
  const [m, mod, nav] = match;
  const seq = ++renderSeq;
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } cleanup = null; }
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.route === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  closeMenu();
  const main = document.getElementById('main');
  // Each render gets its own container, so a slow page that finishes after
  // the user moved on writes into a detached element, not over the new page.
  const container = h('div', { class: 'page' });
  mount(main, container);
  try {
    const c = await mod.render(container, m.slice(1).map((p) => p && decodeURIComponent(p)), { liveEvents });
    if (seq === renderSeq) cleanup = c || null;
    else if (c) c();
  } catch (e) {
    console.error(e);
    mount(container, h('p', { class: 'notice error' }, `This page failed to load: ${e.readable || e.message}`));
  }
  document.title = `${container.querySelector('h1')?.textContent || 'Dashboard'} · StacyVM`;
  if (document.activeElement && document.activeElement !== document.body
      && !main.contains(document.activeElement) && !document.querySelector('dialog[open]')) {
    main.focus({ preventScroll: true });
  }
}

function closeMenu() {
  document.querySelector('.nav-toggle').setAttribute('aria-expanded', 'false');
  document.getElementById('nav').classList.remove('open');
}

function init() {
  onAuthRequired(askKey);
  // The skip link must not change the hash (that is the router's).
  document.querySelector('.skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    document.getElementById('main').focus();
  });
  document.getElementById('key-btn').addEventListener('click', async () => {
    const key = await askKey('');
    if (key) { setKey(key); toast('API key saved for this session', 'ok'); route(); }
  });
  const toggle = document.querySelector('.nav-toggle');
  toggle.addEventListener('click', () => {
    const open = toggle.getAttribute('aria-expanded') !== 'true';
    toggle.setAttribute('aria-expanded', String(open));
    document.getElementById('nav').classList.toggle('open', open);
  });
  window.addEventListener('hashchange', route);
  startFeed();
  route();
}

init();
