// Development stub of the StacyVM API (in memory, no dependencies) for
// working on the dashboard without building the Rust server. It is NOT the
// proof that the dashboard works: the e2e suite runs against the real
// `stacyvm serve` in CI (scripts/ci/e2e.sh).
//
//   node tests/e2e/dev-stub.mjs [port]      (STUB_API_KEY=... turns auth on)

import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const webDir = path.resolve(here, '../../crates/stacyvm-server/web');
const port = Number(process.argv[2] || process.env.PORT || 7598);
const apiKey = process.env.STUB_API_KEY || '';
const noTty = Boolean(process.env.STUB_NO_TTY); // imitate a provider without PTYs

const sandboxes = new Map();
const templates = new Map();
const files = new Map(); // id -> Map(path -> Buffer)
const events = [];
const subscribers = new Set();
const ops = new Map();
let evtSeq = 0;

const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const ttlMs = (s) => {
  let ms = 0;
  for (const [, n, u] of String(s).matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(n) * { ms: 1, s: 1e3, m: 6e4, h: 3.6e6 }[u];
  return ms;
};

function emit(type, sandboxId, data = {}) {
  const ev = { id: `evt-${++evtSeq}`, type, sandbox_id: sandboxId, timestamp: now(), data };
  events.push(ev);
  if (events.length > 500) events.shift();
  for (const res of subscribers) res.write(`id: ${ev.id}\ndata: ${JSON.stringify(ev)}\n\n`);
}

function op(name, ok, ms) {
  const k = `${name}/mock`;
  const o = ops.get(k) || { operation: name, provider: 'mock', success_total: 0, failure_total: 0, latency_count: 0, latency_total_ms: 0, latency_max_ms: 0, samples: [] };
  ok ? o.success_total++ : o.failure_total++;
  o.latency_count++; o.latency_total_ms += ms; o.latency_max_ms = Math.max(o.latency_max_ms, ms);
  o.samples.push(ms);
  ops.set(k, o);
}

const json = (res, status, body) => {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
};
const fail = (res, status, code, message) => json(res, status, { code, message });

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}

function spawn(b) {
  const t = b.template ? templates.get(b.template) : null;
  if (b.template && !t) return [404, { code: 'not_found', message: `template ${b.template} not found` }];
  const id = `sb-${crypto.randomBytes(4).toString('hex')}`;
  const ttl = b.ttl || t?.ttl || '30m';
  const sb = {
    id, state: 'running', provider: b.provider || t?.provider || 'mock', image: b.image || t?.image || 'alpine:latest',
    memory_mb: b.memory_mb || t?.memory_mb || 512, vcpus: b.vcpus || t?.vcpus || 1, owner_id: b.owner_id,
    created_at: now(), expires_at: new Date(Date.now() + ttlMs(ttl)).toISOString().replace(/\.\d+Z$/, 'Z'),
    metadata: { ...(t?.metadata || {}), ...(b.metadata || {}) }, preview_domain: 'localhost',
    resource_usage: { cpu_seconds: 0.42, memory_bytes: 23 * 1024 * 1024, pids: 3 },
  };
  sandboxes.set(id, sb);
  files.set(id, new Map([['/etc/hostname', Buffer.from(`${id}\n`)]]));
  op('spawn', true, 40 + Math.random() * 60);
  emit('sandbox.created', id, { provider: sb.provider, image: sb.image });
  emit('sandbox.running', id, { provider: sb.provider });
  return [201, sb];
}

/** Just enough "shell" for the dashboard: echo (with >&2), exit N, $((a+b)). */
function fakeExec(cmd) {
  const r = { exit_code: 0, stdout: '', stderr: '' };
  for (let part of cmd.split(';')) {
    part = part.trim().replace(/\$\(\((\d+)\+(\d+)\)\)/g, (_, a, b) => String(Number(a) + Number(b)));
    if (!part) continue;
    let m;
    if ((m = /^echo\s+(.*?)(\s*>&2)?$/.exec(part))) {
      const text = `${m[1].replace(/^['"]|['"]$/g, '')}\n`;
      if (m[2]) r.stderr += text; else r.stdout += text;
    } else if ((m = /^exit\s+(\d+)$/.exec(part))) {
      r.exit_code = Number(m[1]);
      break;
    } else if (part === 'uname -a') {
      r.stdout += 'Linux stub 6.1.0 x86_64 GNU/Linux\n';
    } else {
      r.stderr += `sh: ${part.split(' ')[0]}: not found\n`;
      r.exit_code = 127;
    }
  }
  return r;
}

async function api(req, res, u) {
  const p = u.pathname.replace(/^\/api\/v1/, '');
  const m = req.method;
  let seg;
  if (p === '/health') return json(res, 200, { status: 'ok', version: '0.1.0-stub', uptime: '5m0s' });
  if (p === '/ready') return json(res, 200, { status: 'ready', version: '0.1.0-stub', uptime: '5m0s', ready_providers: 1, total_providers: 1, providers: [health()] });
  if (p === '/events') {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.write(': ok\n\n');
    const last = req.headers['last-event-id'];
    const from = last ? events.findIndex((e) => e.id === last) + 1 : Math.max(0, events.length - 50);
    for (const ev of events.slice(from)) res.write(`id: ${ev.id}\ndata: ${JSON.stringify(ev)}\n\n`);
    subscribers.add(res);
    req.on('close', () => subscribers.delete(res));
    return;
  }
  if (p === '/metrics') {
    const list = [...sandboxes.values()];
    const by = (k) => list.reduce((a, s) => ({ ...a, [s[k]]: (a[s[k]] || 0) + 1 }), {});
    return json(res, 200, {
      uptime: '5m0s',
      sandboxes: { total: list.length, active: list.filter((s) => s.state === 'running').length, by_state: by('state'), by_provider: by('provider') },
      providers: { total: 1, healthy: 1, items: [health()] },
      events: { subscribers: subscribers.size, history_size: events.length, events_total: evtSeq },
      operations: [...ops.values()].map(({ samples, ...o }) => {
        const s = [...samples].sort((a, b) => a - b);
        const q = (x) => s[Math.min(s.length - 1, Math.floor(x * s.length))];
        return { ...o, latency_avg_ms: o.latency_total_ms / o.latency_count, latency_p50_ms: q(0.5), latency_p99_ms: q(0.99) };
      }),
    });
  }
  if (p === '/diagnostics') return json(res, 200, { generated_at: now(), build: { version: '0.1.0-stub', os: 'linux', arch: 'x86_64' }, store: { healthy: true, latency_ms: 1, driver: 'memory' }, limits: { max_sandboxes: 100, max_ttl: '24h0m0s' }, providers: [health()], redactions: ['API keys'] });
  if (p === '/providers') return json(res, 200, [health()]);
  if (p === '/providers/test' && m === 'POST') return json(res, 200, { mock: true });
  if ((seg = p.match(/^\/providers\/([^/]+)$/))) {
    if (seg[1] !== 'mock') return fail(res, 404, 'not_found', `provider ${seg[1]} not found`);
    return json(res, 200, { name: 'mock', healthy: true, default: true, sandbox_count: sandboxes.size, health: health(), config: { latency: '0s' } });
  }
  if (p === '/templates') {
    if (m === 'GET') return json(res, 200, [...templates.values()]);
    const b = JSON.parse((await body(req)).toString() || '{}');
    if (!b.name) return fail(res, 400, 'bad_request', 'template name is required');
    if (templates.has(b.name)) return fail(res, 409, 'conflict', `template ${b.name} already exists`);
    const t = { ...b, created_at: now(), updated_at: now() };
    templates.set(b.name, t);
    return json(res, 201, t);
  }
  if ((seg = p.match(/^\/templates\/([^/]+)(\/spawn)?$/))) {
    const name = decodeURIComponent(seg[1]);
    const t = templates.get(name);
    if (!t) return fail(res, 404, 'not_found', `template ${name} not found`);
    if (seg[2]) { const b = JSON.parse((await body(req)).toString() || '{}'); const [s, r] = spawn({ ...b, template: name }); return json(res, s, r); }
    if (m === 'GET') return json(res, 200, t);
    if (m === 'DELETE') { templates.delete(name); return json(res, 200, { status: 'deleted' }); }
    if (m === 'PUT') { const b = JSON.parse((await body(req)).toString() || '{}'); const n = { ...b, name, created_at: t.created_at, updated_at: now() }; templates.set(name, n); return json(res, 200, n); }
  }
  if (p === '/sandboxes') {
    if (m === 'GET') return json(res, 200, [...sandboxes.values()]);
    if (m === 'DELETE') return json(res, 200, { pruned: 0 });
    const [s, r] = spawn(JSON.parse((await body(req)).toString() || '{}'));
    return json(res, s, r);
  }
  if ((seg = p.match(/^\/sandboxes\/(sb-[0-9a-f]+)(\/.*)?$/))) {
    const id = seg[1];
    const rest = seg[2] || '';
    const sb = sandboxes.get(id);
    if (!sb) return fail(res, 404, 'not_found', `sandbox ${id} not found`);
    const fs_ = files.get(id);
    if (rest === '' && m === 'GET') return json(res, 200, sb);
    if (rest === '' && m === 'DELETE') {
      sandboxes.delete(id); op('destroy', true, 20); emit('sandbox.destroyed', id, { provider: 'mock' });
      return json(res, 200, { status: 'destroyed' });
    }
    if (rest === '/extend') {
      const b = JSON.parse((await body(req)).toString() || '{}');
      sb.expires_at = new Date(Date.now() + ttlMs(b.ttl)).toISOString().replace(/\.\d+Z$/, 'Z');
      return json(res, 200, sb);
    }
    if (rest === '/logs') return json(res, 200, ['[    0.000000] stub console', `[    0.100000] ${id} booted`]);
    if (rest === '/exec') {
      const b = JSON.parse((await body(req)).toString() || '{}');
      emit('exec.started', id, { operation: 'exec', provider: 'mock' });
      const r = fakeExec(b.command || '');
      op('exec', true, 5 + Math.random() * 30);
      emit('exec.completed', id, { operation: 'exec', exit_code: r.exit_code });
      return json(res, 200, { ...r, duration: '12ms' });
    }
    if (rest === '/files/list') {
      const dir = (u.searchParams.get('path') || '/').replace(/\/+$/, '') + '/';
      const seen = new Map();
      for (const [fp, buf] of fs_) {
        if (!fp.startsWith(dir)) continue;
        const [name, ...more] = fp.slice(dir.length).split('/');
        seen.set(name, { name, path: dir + name, size: more.length ? 0 : buf.length, is_dir: more.length > 0, mod_time: now(), mode: more.length ? '0755' : '0644' });
      }
      op('file_list', true, 3);
      return json(res, 200, [...seen.values()]);
    }
    if (rest === '/files') {
      const fp = u.searchParams.get('path') || '';
      if (!fp.startsWith('/') || fp.includes('..')) return fail(res, 400, 'bad_request', `invalid path ${fp}`);
      if (m === 'PUT') { fs_.set(fp, await body(req)); op('file_write', true, 4); emit('file.written', id, { path: fp }); return json(res, 200, { status: 'written' }); }
      if (m === 'GET') {
        const b = fs_.get(fp);
        if (!b) return fail(res, 404, 'not_found', `file ${fp} not found in ${id}`);
        op('file_read', true, 2); emit('file.read', id, { path: fp });
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        return res.end(b);
      }
      if (m === 'DELETE') { for (const k of [...fs_.keys()]) if (k === fp || k.startsWith(`${fp}/`)) fs_.delete(k); return json(res, 200, { status: 'deleted' }); }
    }
  }
  return fail(res, 404, 'not_found', `route ${m} ${u.pathname} not found`);
}

function health() {
  return { name: 'mock', healthy: true, default: true, latency_ms: 1, last_checked: now(), capabilities: ['spawn', 'exec', 'exec_stream', 'files', 'console', 'health'] };
}

const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' };

const server = http.createServer(async (req, res) => {
  const u = new URL(req.url, 'http://x');
  if (u.pathname.startsWith('/api/v1/')) {
    if (apiKey && req.headers['x-api-key'] !== apiKey) return fail(res, 401, 'unauthorized', 'missing or invalid api key');
    try { return await api(req, res, u); } catch (e) { return fail(res, 500, 'internal', e.message); }
  }
  const rel = u.pathname === '/' ? 'index.html' : u.pathname.slice(1);
  const fp = path.join(webDir, rel);
  if (!fp.startsWith(webDir) || !fs.existsSync(fp) || fs.statSync(fp).isDirectory()) return fail(res, 404, 'not_found', 'no such file');
  res.writeHead(200, { 'Content-Type': types[path.extname(fp)] || 'application/octet-stream', 'Cache-Control': 'no-cache' });
  fs.createReadStream(fp).pipe(res);
});

// ---- minimal WebSocket server for /exec/ws (text frames only) ----
server.on('upgrade', (req, socket) => {
  const u = new URL(req.url, 'http://x');
  const m = u.pathname.match(/^\/api\/v1\/sandboxes\/(sb-[0-9a-f]+)\/exec\/ws$/);
  if (!m || !sandboxes.has(m[1]) || (apiKey && u.searchParams.get('api_key') !== apiKey)) {
    socket.end('HTTP/1.1 401 Unauthorized\r\n\r\n');
    return;
  }
  const accept = crypto.createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  const send = (obj) => {
    const payload = Buffer.from(JSON.stringify(obj));
    const head = payload.length < 126 ? Buffer.from([0x81, payload.length])
      : Buffer.from([0x81, 126, payload.length >> 8, payload.length & 255]);
    socket.write(Buffer.concat([head, payload]));
  };
  let buf = Buffer.alloc(0);
  let line = '';
  let tty = false;
  const id = m[1];
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 2) {
      const opcode = buf[0] & 15;
      let len = buf[1] & 127;
      let off = 2;
      if (len === 126) { len = buf.readUInt16BE(2); off = 4; } else if (len === 127) { len = Number(buf.readBigUInt64BE(2)); off = 10; }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const data = Buffer.from(buf.subarray(off + 4, off + 4 + len)).map((b, i) => b ^ mask[i % 4]);
      buf = buf.subarray(off + 4 + len);
      if (opcode === 8) { socket.end(Buffer.from([0x88, 0])); return; }
      if (opcode !== 1) continue;
      const msg = JSON.parse(Buffer.from(data).toString());
      if (msg.type === 'start') {
        if (noTty && msg.tty) {
          send({ type: 'error', message: 'tty in the mock provider is not supported' });
          socket.end(Buffer.from([0x88, 0]));
          return;
        }
        tty = Boolean(msg.tty);
        emit('exec.started', id, { operation: 'exec_stream', tty });
        send({ type: tty ? 'stdout' : 'stderr', data: tty ? '/ # ' : '$ ' });
      }
      if (msg.type === 'signal') continue;
      if (msg.type !== 'stdin') continue;
      for (const ch of msg.data) {
        if (ch === '\x03') { line = ''; send({ type: 'stdout', data: '^C\r\n/ # ' }); } else if (ch === '\r' || ch === '\n') {
          const nl = tty ? '\r\n' : '\n';
          if (tty) send({ type: 'stdout', data: nl });
          if (line.trim() === 'exit') { send({ type: 'exit', exit_code: 0 }); emit('exec.completed', id, { operation: 'exec_stream', exit_code: 0 }); socket.end(Buffer.from([0x88, 0])); return; }
          const r = fakeExec(line);
          if (r.stdout) send({ type: 'stdout', data: r.stdout.replace(/\n/g, nl) });
          if (r.stderr) send({ type: 'stderr', data: r.stderr.replace(/\n/g, nl) });
          line = '';
          send({ type: tty ? 'stdout' : 'stderr', data: tty ? '/ # ' : '$ ' });
        } else if (ch === '\x7f') { if (line) { line = line.slice(0, -1); if (tty) send({ type: 'stdout', data: '\b \b' }); } } else { line += ch; if (tty) send({ type: 'stdout', data: ch }); }
      }
    }
  });
  socket.on('error', () => {});
});

server.listen(port, '127.0.0.1', () => console.log(`stub StacyVM API on http://127.0.0.1:${port}/${apiKey ? ' (auth on)' : ''}`));
