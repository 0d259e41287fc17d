// Bulk TCP forwarding (SPEC §11): a 100 MiB transfer each way with the proxy's RSS
// measured (/proc/PID/status) while it runs, and backpressure: a side that stops
// reading stops the other side, instead of the proxy buffering the difference.
import t from 'tap'
import { Readable } from 'node:stream'
import { connectFrom, freePort, mulchPort, rssOf, startTcpProxy, startTcpServer } from '../helpers/tcp-forward.ts'
import { metricValue } from '../helpers/proxy-process.ts'
import { pollUntil } from '../helpers/pebble.ts'

/** Polls a number every 100 ms until three samples in a row are equal (bounded). */
async function settled (probe: () => Promise<number>, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs
  let last = await probe()
  let same = 0
  while (same < 3) {
    if (Date.now() > deadline) throw new Error(`still changing after ${timeoutMs} ms (last ${last})`)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const now = await probe()
    same = now === last ? same + 1 : 0
    last = now
  }
  return last
}

const MiB = 1024 * 1024
const TOTAL = 100 * MiB
/** What waits behind a side that does not read, each way. */
const HELD = 64 * MiB
/**
 * The proxy may grow by this much while 200 MiB pass: each read allocates a
 * buffer outside V8's heap, and V8 only collects once such memory has grown by
 * its 64 MiB external soft limit, so RSS rises by about that much and stays there
 * (measured: +69 MiB over 200 MiB). Memory that followed the data would exceed it.
 */
const RSS_BUDGET = 96 * MiB

function source (bytes: number): Readable {
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  let left = bytes
  return new Readable({
    read () {
      if (left <= 0) { this.push(null); return }
      const n = Math.min(left, chunk.length)
      left -= n
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n))
    }
  })
}

function sampleRss (pid: number): { stop: () => number } {
  let peak = rssOf(pid)
  const timer = setInterval(() => { peak = Math.max(peak, rssOf(pid)) }, 20)
  return { stop: () => { clearInterval(timer); return Math.max(peak, rssOf(pid)) } }
}

t.test('100 MiB up and 100 MiB down with bounded proxy memory', async (t) => {
  const vm = await startTcpServer(t, (s) => {
    let n = 0
    s.on('data', (c: Buffer) => { n += c.length })
    // once the upload ends, answer with 100 MiB
    s.on('end', () => { s.write(`${n}\n`); source(TOTAL).pipe(s) })
  })
  const listen = await freePort()
  const proxy = await startTcpProxy(t, mulchPort(listen, { '*': [vm.port] }))
  const pid = proxy.child.pid!
  const base = rssOf(pid)
  const rss = sampleRss(pid)
  const s = await connectFrom(listen)
  t.teardown(() => s.destroy())
  const started = Date.now()
  source(TOTAL).pipe(s)
  let received = 0
  let head = ''
  await new Promise<void>((resolve, reject) => {
    s.on('data', (c: Buffer) => {
      if (head === '' || !head.includes('\n')) {
        const text = c.toString('latin1')
        const nl = text.indexOf('\n')
        head += nl === -1 ? text : text.slice(0, nl + 1)
        if (nl !== -1) received += c.length - nl - 1
        return
      }
      received += c.length
    })
    s.on('end', resolve)
    s.on('error', reject)
  })
  const seconds = (Date.now() - started) / 1000
  const peak = rss.stop()
  t.equal(head, `${TOTAL}\n`, 'the VM got every byte of the upload')
  t.equal(received, TOTAL, 'the client got every byte of the download')
  t.ok(peak - base < RSS_BUDGET, `proxy RSS ${(base / MiB).toFixed(0)} MiB -> peak ${(peak / MiB).toFixed(0)} MiB over 200 MiB forwarded (${(200 / seconds).toFixed(0)} MiB/s)`)
})

t.test('backpressure both ways: a side that stops reading holds the other, not the proxy\'s memory', async (t) => {
  let vmSocket: import('node:net').Socket | undefined
  let vmReceived = 0
  const vm = await startTcpServer(t, (s) => {
    vmSocket = s
    s.pause() // the VM does not read yet
    s.on('data', (c: Buffer) => { vmReceived += c.length })
  })
  const listen = await freePort()
  const proxy = await startTcpProxy(t, mulchPort(listen, { '*': [vm.port] }))
  const pid = proxy.child.pid!
  const base = rssOf(pid)
  const rss = sampleRss(pid)
  const s = await connectFrom(listen)
  t.teardown(() => s.destroy())
  // Upload 64 MiB ignoring backpressure: the excess must stay in this process.
  const up = Buffer.alloc(HELD, 0x62)
  s.write(up)
  const bytes = async (direction: string): Promise<number> => metricValue(await proxy.metrics(), `vmfront_tcp_bytes_total{port="${listen}",direction="${direction}"}`) ?? 0
  const readUp = await settled(() => bytes('in'))
  t.ok(readUp < 32 * MiB, `the proxy stopped reading the client after ${(readUp / MiB).toFixed(1)} MiB of 64 (socket buffers)`)
  // The VM downloads to a client that does not read either.
  s.pause()
  const down = Buffer.alloc(HELD, 0x63)
  vmSocket!.write(down)
  const readDown = await settled(() => bytes('out'))
  t.ok(readDown < 32 * MiB, `the proxy stopped reading the VM after ${(readDown / MiB).toFixed(1)} MiB of 64 (socket buffers)`)
  const held = rss.stop()
  t.ok(held - base < RSS_BUDGET, `proxy RSS ${(base / MiB).toFixed(0)} MiB -> ${(held / MiB).toFixed(0)} MiB while 128 MiB wait`)
  // Both resume: everything arrives.
  let clientReceived = 0
  s.on('data', (c: Buffer) => { clientReceived += c.length })
  s.resume()
  vmSocket!.resume()
  await pollUntil(() => vmReceived >= HELD && clientReceived >= HELD, 20_000, 'both sides to receive everything').catch(() => {})
  t.equal(vmReceived, HELD, 'the upload arrived whole once the VM read')
  t.equal(clientReceived, HELD, 'the download arrived whole once the client read')
})
