// Interactive shell over the exec WebSocket (/sandboxes/{id}/exec/ws) with
// xterm.js (vendored), falling back to a plain <pre> + input line if the
// module cannot load. Protocol: see api-v1.md "WebSocket exec".

import { get, wsUrl } from './api.js';
import { h, mount, field } from './ui.js';

const XTERM = './vendor/xterm-6.0.0/';

async function loadXterm() {
  try {
    const [{ Terminal }, { FitAddon }] = await Promise.all([
      import(`${XTERM}xterm.mjs`), import(`${XTERM}addon-fit.mjs`),
    ]);
    if (!document.querySelector('link[data-xterm]')) {
      document.head.append(h('link', { rel: 'stylesheet', href: `${XTERM}xterm.css`, 'data-xterm': '' }));
    }
    return { Terminal, FitAddon };
  } catch (e) {
    console.warn('xterm.js unavailable, using the plain terminal', e);
    return null;
  }
}

/** xterm.js view: write(text), size, and input/resize callbacks. */
function xtermView(lib, host) {
  const term = new lib.Terminal({
    cursorBlink: true, convertEol: false, scrollback: 5000, fontSize: 14,
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace',
    theme: { background: '#0f1419', foreground: '#e6e1cf', cursor: '#ffcc66' },
  });
  const fit = new lib.FitAddon();
  term.loadAddon(fit);
  term.open(host);
  const doFit = () => { try { fit.fit(); } catch { /* hidden */ } };
  doFit();
  const ro = new ResizeObserver(doFit);
  ro.observe(host);
  return {
    tty: true,
    // Without a PTY the output has bare "\n" line ends.
    setLineMode: (on) => { term.options.convertEol = on; },
    write: (t) => term.write(t),
    note: (t) => term.write(`\r\n\x1b[2m${t}\x1b[0m\r\n`),
    size: () => ({ cols: term.cols, rows: term.rows }),
    onInput: (fn) => term.onData(fn),
    onResize: (fn) => term.onResize(({ cols, rows }) => fn(cols, rows)),
    focus: () => term.focus(),
    dispose: () => { ro.disconnect(); term.dispose(); },
  };
}

/** Fallback: line-based, no PTY. */
function plainView(host) {
  const out = h('pre', { class: 'console plain-term', tabindex: '0', 'aria-live': 'polite' });
  const input = h('input', { class: 'mono', autocomplete: 'off', spellcheck: 'false' });
  const form = h('form', { class: 'plain-input' }, field('Input', input));
  host.append(out, form);
  let inputFn = () => {};
  form.addEventListener('submit', (e) => { e.preventDefault(); inputFn(`${input.value}\n`); input.value = ''; });
  input.addEventListener('keydown', (e) => {
    if (e.ctrlKey && e.key === 'c') { e.preventDefault(); inputFn('\x03'); }
  });
  // eslint-disable-next-line no-control-regex
  const strip = (t) => t.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
  return {
    tty: false,
    lineInput: true,
    setLineMode: () => {},
    write: (t) => { out.textContent += strip(t); out.scrollTop = out.scrollHeight; },
    note: (t) => { out.textContent += `\n${t}\n`; },
    size: () => ({ cols: 80, rows: 24 }),
    onInput: (fn) => { inputFn = fn; },
    onResize: () => {},
    focus: () => input.focus(),
    dispose: () => {},
  };
}

/**
 * An interactive shell should live as long as the server allows, not for
 * the default exec timeout meant for one-shot commands: ask for the
 * configured maximum (a day when there is none). Undefined when unknown, so
 * the server default applies.
 */
async function sessionTimeout() {
  try {
    const d = await get('diagnostics');
    const max = d && d.limits && d.limits.max_exec_timeout;
    if (typeof max !== 'string' || !max) return undefined;
    return /^0+(\.0+)?[a-z]*$/.test(max) ? '24h' : max;
  } catch { return undefined; }
}

/** Mounts the terminal UI into `root`; returns a cleanup function. */
export async function openTerminal(root, sandboxId) {
  const lib = await loadXterm();
  const status = h('span', { class: 'term-status', role: 'status' }, 'disconnected');
  const shell = h('input', { name: 'shell', value: '/bin/sh', class: 'mono', spellcheck: 'false', size: '12' });
  const btn = h('button', { type: 'submit', class: 'primary' }, 'Connect');
  const host = h('div', { class: lib ? 'xterm-host' : 'plain-host', 'data-testid': 'terminal' });
  mount(root,
    h('form', { class: 'term-bar', 'aria-label': 'Terminal connection' },
      field('Shell', shell), h('div', { class: 'field end' }, btn), status,
      h('span', { class: 'muted small hint-keys' }, 'Ctrl-C interrupts · the terminal resizes with the window')),
    host);

  const view = lib ? xtermView(lib, host) : plainView(host);
  const timeout = await sessionTimeout();
  let ws = null;

  const send = (msg) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };
  const setStatus = (text, state) => { status.textContent = text; status.dataset.state = state; };

  // PTY mode sends keystrokes as they come. Line mode (no PTY on the
  // server: some providers cannot allocate one) edits the line locally and
  // sends it on Enter, like a dumb terminal.
  let lineMode = !view.tty;
  let line = '';

  function interrupt() {
    send({ type: 'signal', signal: 'SIGINT' });
  }

  function lineInput(data) {
    if (view.lineInput) { // the plain view already edits lines
      if (data === '\x03') interrupt(); else send({ type: 'stdin', data });
      return;
    }
    if (data.startsWith('\x1b')) return; // arrows, function keys: no history here
    for (const ch of data) {
      if (ch === '\r' || ch === '\n') {
        view.write('\r\n');
        send({ type: 'stdin', data: `${line}\n` });
        line = '';
      } else if (ch === '\x7f' || ch === '\b') {
        if (line) { line = [...line].slice(0, -1).join(''); view.write('\b \b'); }
      } else if (ch === '\x03') {
        view.write('^C\r\n');
        line = '';
        interrupt();
      } else if (ch === '\x15') { // Ctrl-U: erase the line
        view.write('\b \b'.repeat([...line].length));
        line = '';
      } else if (ch >= ' ') {
        line += ch;
        view.write(ch);
      }
    }
  }

  view.onInput((data) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (lineMode) { lineInput(data); return; }
    if (data === '\x03') {
      // Deliver Ctrl-C both ways: the PTY's line discipline turns the byte
      // into SIGINT for the foreground job; the signal message covers
      // servers whose PTY does not.
      send({ type: 'stdin', data });
      interrupt();
      return;
    }
    send({ type: 'stdin', data });
  });
  view.onResize((cols, rows) => send({ type: 'resize', cols, rows }));

  function disconnect() {
    if (ws) { const w = ws; ws = null; w.onclose = null; w.close(); }
    btn.textContent = 'Connect';
    setStatus('disconnected', 'off');
  }

  function connect() {
    disconnect();
    let opened = false;
    let exited = false;
    setStatus('connecting…', 'connecting');
    const sock = new WebSocket(wsUrl(`sandboxes/${encodeURIComponent(sandboxId)}/exec/ws`));
    ws = sock;
    btn.textContent = 'Disconnect';
    let output = false;
    sock.onopen = () => {
      opened = true;
      setStatus(lineMode ? 'connected (line mode, no PTY)' : 'connected', 'live');
      const { cols, rows } = view.size();
      const cmd = shell.value.trim() || '/bin/sh';
      view.setLineMode(lineMode);
      line = '';
      sock.send(JSON.stringify({
        type: 'start', command: cmd,
        // Without a PTY a shell only prompts when told it is interactive.
        args: lineMode && /(^|\/)(sh|bash|dash|ash|zsh)$/.test(cmd) ? ['-i'] : [],
        mode: 'argv', env: { TERM: lineMode ? 'dumb' : 'xterm-256color' },
        workdir: '', tty: !lineMode, cols, rows, timeout,
      }));
      view.focus();
    };
    sock.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch { return; }
      if (msg.type === 'stdout' || msg.type === 'stderr') { output = true; view.write(msg.data || ''); }
      else if (msg.type === 'exit') {
        exited = true;
        view.note(`[process exited with code ${msg.exit_code}]`);
        setStatus(`exited (${msg.exit_code})`, 'off');
      } else if (msg.type === 'error') {
        if (!lineMode && !output && /tty|pty|terminal/i.test(msg.message || '')) {
          // The provider cannot give us a PTY: retry as a line-mode session.
          exited = true;
          lineMode = true;
          view.note(`${msg.message} — switching to line mode`);
          setTimeout(connect, 0);
          return;
        }
        view.note(`error: ${msg.message}`);
        setStatus('error', 'bad');
      }
    };
    sock.onclose = async (ev) => {
      if (ws !== sock) return;
      ws = null;
      btn.textContent = 'Connect';
      if (exited) return;
      if (!opened) {
        // The browser hides the HTTP status of a refused upgrade; ask the
        // REST API about the sandbox to get a readable reason (or a 401
        // prompt), then let the user retry.
        setStatus('could not connect', 'bad');
        try {
          await get(`sandboxes/${encodeURIComponent(sandboxId)}`);
          view.note('connection refused by the server');
        } catch (e) { view.note(`cannot connect: ${e.readable || e.message}`); }
        return;
      }
      setStatus(ev.code === 1000 ? 'closed' : `closed (${ev.code})`, 'off');
    };
  }

  root.querySelector('form.term-bar').addEventListener('submit', (e) => {
    e.preventDefault();
    if (ws) disconnect(); else connect();
  });
  connect();
  return () => { disconnect(); view.dispose(); };
}
