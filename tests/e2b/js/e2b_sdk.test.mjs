// The official `e2b` npm SDK, unmodified, against `stacyvm serve` with
// `e2b.enabled`: the same scenario as ../test_e2b_sdk.py. scripts/ci/e2b.sh
// installs the SDK release under a cache directory, copies this file next
// to its node_modules and runs it with `node --test`.
//
// Env: E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY (the SDK's own variables),
// E2B_TEST_TEMPLATE (a StacyVM template name), E2B_TEST_IMAGE (an image
// the server has, used as a templateID too).

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { Sandbox, CommandExitError, TimeoutError, NotFoundError, SandboxError } from 'e2b'

const TEMPLATE = process.env.E2B_TEST_TEMPLATE || 'busybox'
const IMAGE = process.env.E2B_TEST_IMAGE || ''

let sbx
before(async () => {
  sbx = await Sandbox.create(TEMPLATE, { timeoutMs: 300_000, envs: { FROM_CREATE: 'yes' } })
})
after(async () => {
  if (sbx) await sbx.kill()
})

test('create reports a running sandbox', async () => {
  assert.match(sbx.sandboxId, /^sb-/)
  assert.equal(await sbx.isRunning(), true)
  const info = await sbx.getInfo()
  assert.equal(info.sandboxId, sbx.sandboxId)
  assert.equal(info.templateId, TEMPLATE)
})

test('run: stdout, stderr and exit code', async () => {
  const r = await sbx.commands.run('echo out; echo err >&2')
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'out\n')
  assert.equal(r.stderr, 'err\n')
  await assert.rejects(sbx.commands.run('echo partial; exit 3'), (e) => {
    assert.ok(e instanceof CommandExitError, String(e))
    assert.equal(e.exitCode, 3)
    assert.equal(e.stdout, 'partial\n')
    return true
  })
})

test('run: env and cwd', async () => {
  const r = await sbx.commands.run('echo $FROM_CREATE $ONE', { envs: { ONE: '1' } })
  assert.equal(r.stdout, 'yes 1\n')
  await sbx.files.makeDir('/tmp/cwd-js')
  const p = await sbx.commands.run('pwd', { cwd: '/tmp/cwd-js' })
  assert.equal(p.stdout.trim(), '/tmp/cwd-js')
})

test('run: timeout raises the SDK TimeoutError', async () => {
  const started = Date.now()
  await assert.rejects(sbx.commands.run('sleep 30', { timeoutMs: 1000 }), (e) => {
    assert.ok(e instanceof TimeoutError, `${e?.constructor?.name}: ${e}`)
    return true
  })
  assert.ok(Date.now() - started < 15_000)
})

test('background command is listed and killed', async () => {
  const h = await sbx.commands.run('sleep 60', { background: true })
  assert.ok(h.pid > 0)
  assert.ok((await sbx.commands.list()).some((p) => p.pid === h.pid))
  assert.equal(await sbx.commands.kill(h.pid), true)
  await assert.rejects(h.wait())
  assert.ok(!(await sbx.commands.list()).some((p) => p.pid === h.pid))
})

test('background command outlives its stream and is reconnected by pid', async () => {
  const h = await sbx.commands.run('sleep 1; echo second; sleep 60', { background: true })
  await h.disconnect()
  const again = await sbx.commands.connect(h.pid)
  await new Promise((r) => setTimeout(r, 1500))
  assert.ok((await sbx.commands.list()).some((p) => p.pid === h.pid))
  assert.equal(await sbx.commands.kill(h.pid), true)
  await assert.rejects(again.wait(), (e) => {
    assert.ok(e instanceof CommandExitError, `${e?.constructor?.name}: ${e}`)
    assert.match(e.stdout, /second/)
    return true
  })
  await assert.rejects(sbx.commands.connect(h.pid))
})

test('stdin is fed to a command', async () => {
  const h = await sbx.commands.run('head -c 5', { background: true, stdin: true })
  await sbx.commands.sendStdin(h.pid, 'hello')
  const r = await h.wait()
  assert.equal(r.stdout, 'hello')
})

test('closeStdin ends the input (envdVersion 0.5.7 claims it)', async () => {
  assert.equal(sbx.commands.supportsStdinClose, true)
  const h = await sbx.commands.run('cat; echo done', { background: true, stdin: true })
  await sbx.commands.sendStdin(h.pid, 'abc')
  await sbx.commands.closeStdin(h.pid)
  const r = await h.wait()
  assert.equal(r.stdout, 'abcdone\n')
})

test('PTY session with input and resize', async () => {
  let out = ''
  const dec = new TextDecoder()
  const h = await sbx.pty.create({ rows: 24, cols: 80, onData: (d) => { out += dec.decode(d) } })
  await sbx.pty.resize(h.pid, { rows: 30, cols: 100 })
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode('stty size; echo pty-$((40+2)); exit\n'))
  const r = await h.wait()
  assert.equal(r.exitCode, 0)
  assert.match(out, /30 100/)
  assert.match(out, /pty-42/)
})

test('files: write, read, list, exists, getInfo', async () => {
  const info = await sbx.files.write('/tmp/e2b-js/a.txt', 'hello')
  assert.equal(info.path, '/tmp/e2b-js/a.txt')
  assert.equal(await sbx.files.read('/tmp/e2b-js/a.txt'), 'hello')
  assert.equal(await sbx.files.exists('/tmp/e2b-js/a.txt'), true)
  assert.equal(await sbx.files.exists('/tmp/e2b-js/nope.txt'), false)
  const names = (await sbx.files.list('/tmp/e2b-js')).map((e) => e.name)
  assert.ok(names.includes('a.txt'), names.join(','))
  assert.equal((await sbx.files.getInfo('/tmp/e2b-js/a.txt')).size, 5)
  await assert.rejects(sbx.files.read('/tmp/e2b-js/nope.txt'), (e) => {
    assert.ok(e instanceof NotFoundError, `${e?.constructor?.name}: ${e}`)
    return true
  })
})

test('files: makeDir, rename, remove', async () => {
  assert.equal(await sbx.files.makeDir('/tmp/e2b-js-dir/sub'), true)
  assert.equal(await sbx.files.makeDir('/tmp/e2b-js-dir/sub'), false)
  await sbx.files.write('/tmp/e2b-js-dir/sub/f', 'x')
  const moved = await sbx.files.rename('/tmp/e2b-js-dir/sub/f', '/tmp/e2b-js-dir/g')
  assert.equal(moved.path, '/tmp/e2b-js-dir/g')
  assert.equal(await sbx.files.exists('/tmp/e2b-js-dir/sub/f'), false)
  await sbx.files.remove('/tmp/e2b-js-dir')
  assert.equal(await sbx.files.exists('/tmp/e2b-js-dir'), false)
})

test('files: 10 MiB binary round trip', async () => {
  const data = randomBytes(10 * 1024 * 1024)
  await sbx.files.write('/tmp/big-js.bin', new Blob([data]))
  const back = await sbx.files.read('/tmp/big-js.bin', { format: 'bytes' })
  assert.equal(back.length, data.length)
  assert.ok(Buffer.from(back).equals(data))
  const r = await sbx.commands.run('wc -c < /tmp/big-js.bin')
  assert.equal(r.stdout.trim(), String(data.length))
})

test('setTimeout moves the end', async () => {
  const before = (await sbx.getInfo()).endAt
  await sbx.setTimeout(600_000)
  const later = (await sbx.getInfo()).endAt
  assert.ok(later > before, `${later} <= ${before}`)
})

test('list filters by metadata and pages with X-Next-Token', async () => {
  const tag = randomUUID()
  const made = []
  for (let i = 0; i < 3; i++) {
    made.push(await Sandbox.create(TEMPLATE, { metadata: { suite: tag, 'odd key': 'a&b=c' } }))
  }
  try {
    const pager = Sandbox.list({ query: { metadata: { suite: tag } }, limit: 2 })
    const seen = await pager.nextItems()
    assert.equal(seen.length, 2)
    assert.equal(pager.hasNext, true)
    seen.push(...(await pager.nextItems()))
    assert.equal(pager.hasNext, false)
    assert.deepEqual(seen.map((s) => s.sandboxId).sort(), made.map((m) => m.sandboxId).sort())
    const odd = await Sandbox.list({ query: { metadata: { 'odd key': 'a&b=c' } } }).nextItems()
    assert.ok(odd.some((s) => s.sandboxId === made[0].sandboxId))
    const none = await Sandbox.list({ query: { metadata: { suite: 'other' } } }).nextItems()
    assert.deepEqual(none, [])
  } finally {
    for (const m of made) await m.kill()
  }
})

test('connect reaches the same sandbox', async () => {
  const again = await Sandbox.connect(sbx.sandboxId)
  assert.equal((await again.commands.run('echo $FROM_CREATE')).stdout, 'yes\n')
})

test('pause is refused with a clear error', async () => {
  await assert.rejects(sbx.pause(), (e) => {
    assert.ok(e instanceof SandboxError || e instanceof Error, String(e))
    assert.match(String(e.message), /pause is not supported/)
    return true
  })
  assert.equal(await sbx.isRunning(), true)
})

test('an image works as templateID', async () => {
  assert.ok(IMAGE, 'E2B_TEST_IMAGE not set')
  const s = await Sandbox.create(IMAGE)
  try {
    assert.equal((await s.commands.run('echo ok')).stdout, 'ok\n')
  } finally {
    await s.kill()
  }
})

test('kill ends the sandbox', async () => {
  const s = await Sandbox.create(TEMPLATE)
  assert.equal(await s.kill(), true)
  assert.equal(await s.isRunning(), false)
  assert.equal(await Sandbox.kill(s.sandboxId), false)
  await assert.rejects(Sandbox.connect(s.sandboxId), (e) => {
    assert.ok(e instanceof NotFoundError, `${e?.constructor?.name}: ${e}`)
    return true
  })
})
