// TCP forwarding reads into reusable buffers (SPEC §11, issue 11's bench row): a
// bulk transfer must not make the proxy's memory follow the data (a fresh 64 KiB
// buffer per read grew its RSS by ~70 MiB per 200 MiB and cost a full GC every 64
// MiB), and reusing a buffer must never send bytes a later read overwrote: checked
// with patterned data, hashed at both ends, against receivers that stall so that
// the proxy's writes stay unfinished while more data waits.
import t from 'tap'
import type { Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { connectFrom, echoOnce, freePort, mulchPort, readToEnd, startTcpProxy, startTcpServer } from '../helpers/tcp-forward.ts'
import { peakRss, resetPeakRss, rss } from '../helpers/proc-stat.ts'
import { pollUntil } from '../helpers/pebble.ts'

const MiB = 1024 * 1024
/** One bulk transfer: past V8's 64 MiB external-memory step, where a buffer per read showed. */
const TOTAL = 128 * MiB
/** What the proxy's RSS may grow by while TOTAL passes one way (measured: +0.1 to +1.3 MiB; a buffer per read: +64 to +72 MiB). */
const RSS_BUDGET = 16 * MiB

/**
 * A byte stream that never repeats at a read-sized distance: random bytes with a
 * period of 1 MiB + 7, so bytes from another place in the stream change the hash.
 */
function pattern (): (n: number) => Buffer {
  const block = randomBytes(MiB + 7)
  let at = 0
  return (n) => {
    const out = Buffer.allocUnsafe(n)
    for (let filled = 0; filled < n;) {
      const copied = block.copy(out, filled, at, Math.min(block.length, at + n - filled))
      filled += copied
      at = (at + copied) % block.length
    }
    return out
  }
}

/** Writes `total` bytes of `next` in chunks of the given sizes (cycled), honouring backpressure; resolves with their hash. */
async function sendPattern (s: Socket, total: number, next: (n: number) => Buffer, sizes: number[]): Promise<string> {
  const hash = createHash('sha256')
  let left = total
  let i = 0
  while (left > 0) {
    const chunk = next(Math.min(left, sizes[i++ % sizes.length]))
    hash.update(chunk)
    left -= chunk.length
    if (!s.write(chunk)) await new Promise((resolve) => s.once('drain', resolve))
  }
  s.end()
  return hash.digest('hex')
}

/**
 * Reads to the end, hashing; with `stallEvery` it stops reading for `stallMs` after
 * each such many bytes, so the sender's side fills and the proxy's writes wait.
 */
function receive (s: Socket, stallEvery = 0, stallMs = 0): Promise<{ bytes: number, hash: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    let bytes = 0
    let sinceStall = 0
    s.on('data', (c: Buffer) => {
      hash.update(c)
      bytes += c.length
      sinceStall += c.length
      if (stallEvery > 0 && sinceStall >= stallEvery) {
        sinceStall = 0
        s.pause()
        setTimeout(() => s.resume(), stallMs)
      }
    })
    s.on('end', () => { resolve({ bytes, hash: hash.digest('hex') }) })
    s.on('error', reject)
  })
}

/** A VM that hashes what it receives and reports `bytes hash` when the client's FIN comes. */
async function hashingVm (t: Test, stallEvery = 0, stallMs = 0): Promise<number> {
  const vm = await startTcpServer(t, (s) => {
    void receive(s, stallEvery, stallMs).then(({ bytes, hash }) => { s.end(`${bytes} ${hash}`) })
  })
  return vm.port
}

/** A VM that sends `total` patterned bytes to whoever connects, then ends. */
async function sendingVm (t: Test, total: number, sizes: number[]): Promise<{ port: number, sent: Promise<string> }> {
  let resolveSent!: (hash: string) => void
  const sent = new Promise<string>((resolve) => { resolveSent = resolve })
  const vm = await startTcpServer(t, (s) => { void sendPattern(s, total, pattern(), sizes).then(resolveSent) })
  return { port: vm.port, sent }
}

async function proxyTo (t: Test, vmPort: number): Promise<{ listen: number, pid: number }> {
  const listen = await freePort()
  const proxy = await startTcpProxy(t, mulchPort(listen, { '*': [vmPort] }))
  return { listen, pid: proxy.child.pid! }
}

/** Uploads `total` patterned bytes and checks the VM's count and hash; resolves with the proxy's RSS growth. */
async function upload (t: Test, listen: number, pid: number, total: number, sizes: number[]): Promise<number> {
  const s = await connectFrom(listen)
  t.teardown(() => s.destroy())
  const base = rss(pid)
  resetPeakRss(pid)
  const answer = readToEnd(s, 60_000)
  const sent = await sendPattern(s, total, pattern(), sizes)
  const { data } = await answer
  t.equal(data.toString(), `${total} ${sent}`, `the VM got all ${total / MiB} MiB, in order`)
  return peakRss(pid) - base
}

/** Downloads from a sending VM and checks the count and hash; resolves with the proxy's RSS growth. */
async function download (t: Test, listen: number, pid: number, vm: { sent: Promise<string> }, total: number, stallEvery = 0, stallMs = 0): Promise<number> {
  const base = rss(pid)
  resetPeakRss(pid)
  const s = await connectFrom(listen)
  t.teardown(() => s.destroy())
  const got = await receive(s, stallEvery, stallMs)
  s.end()
  t.same(got, { bytes: total, hash: await vm.sent }, `the client got all ${total / MiB} MiB, in order`)
  return peakRss(pid) - base
}

const mib = (n: number): string => `${(n / MiB).toFixed(1)} MiB`

t.test('128 MiB each way: every byte in order, and the proxy\'s memory does not follow the data', async (t) => {
  const up = await proxyTo(t, await hashingVm(t))
  const grewUp = await upload(t, up.listen, up.pid, TOTAL, [256 * 1024])
  t.ok(grewUp < RSS_BUDGET, `proxy RSS grew by ${mib(grewUp)} over a ${mib(TOTAL)} upload (budget ${mib(RSS_BUDGET)})`)
  const vm = await sendingVm(t, TOTAL, [256 * 1024])
  const down = await proxyTo(t, vm.port)
  const grewDown = await download(t, down.listen, down.pid, vm, TOTAL)
  t.ok(grewDown < RSS_BUDGET, `proxy RSS grew by ${mib(grewDown)} over a ${mib(TOTAL)} download (budget ${mib(RSS_BUDGET)})`)
})

t.test('receivers that stall: the proxy\'s unfinished writes are never overwritten by later reads', async (t) => {
  // Odd chunk sizes, from one byte to more than the proxy's largest read buffer.
  const sizes = [1, 4095, 4096, 4097, 65_537, 300_000, 17, 262_144, 262_145, 1000]
  const up = await proxyTo(t, await hashingVm(t, 3 * MiB, 5))
  await upload(t, up.listen, up.pid, 48 * MiB, sizes)
  const vm = await sendingVm(t, 48 * MiB, sizes)
  const down = await proxyTo(t, vm.port)
  await download(t, down.listen, down.pid, vm, 48 * MiB, 3 * MiB, 5)
})

t.test('small exchanges after a bulk burst still go through one by one', async (t) => {
  const vm = await startTcpServer(t, (s) => { s.pipe(s) })
  const { listen } = await proxyTo(t, vm.port)
  const s = await connectFrom(listen)
  t.teardown(() => s.destroy())
  const burst = pattern()(8 * MiB)
  let echoed = 0
  const chunks: Buffer[] = []
  await new Promise<void>((resolve) => {
    s.on('data', (c: Buffer) => {
      chunks.push(c)
      echoed += c.length
      if (echoed >= burst.length) resolve()
    })
    s.write(burst)
  })
  s.removeAllListeners('data')
  t.ok(Buffer.concat(chunks).equals(burst), 'the 8 MiB burst came back whole')
  for (const line of ['a', 'bc', 'ping 3\n', 'x'.repeat(5000)]) {
    t.equal(await echoOnce(s, line), line, `then ${line.length} byte(s) echo alone`)
  }
})

t.test('many connections that each sent one burst and went quiet hold a bounded amount of memory', async (t) => {
  let received = 0
  const vm = await startTcpServer(t, (s) => { s.on('data', (c: Buffer) => { received += c.length }) })
  const { listen, pid } = await proxyTo(t, vm.port)
  const clients: Socket[] = []
  t.teardown(() => { for (const c of clients) c.destroy() })
  const base = rss(pid)
  const next = pattern()
  const CONNECTIONS = 500
  // Exactly one small read buffer (its size is what earns a large one), then a
  // burst that fills the large one with bytes, then silence.
  for (let i = 0; i < CONNECTIONS; i += 30) {
    const batch = await Promise.all(Array.from({ length: Math.min(30, CONNECTIONS - i) }, async () => await connectFrom(listen)))
    clients.push(...batch)
    let expected = received
    for (const c of batch) { c.write(next(4096)); expected += 4096 }
    await pollUntil(() => received >= expected, 10_000, 'the first 4 KiB of each connection')
    for (const c of batch) { c.write(next(240 * 1024)); expected += 240 * 1024 }
    await pollUntil(() => received >= expected, 10_000, 'the burst of each connection')
  }
  const grew = rss(pid) - base
  t.ok(grew < 32 * MiB, `proxy RSS grew by ${mib(grew)} for ${CONNECTIONS} quiet connections after a 244 KiB burst each`)
})
