// Streamed bodies both ways, server-sent events and WebSockets through a real proxy.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { Readable } from 'node:stream'
import { createHash } from 'node:crypto'
import { request } from 'undici'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'
import { startBackend, webSocketRoundTrip } from '../helpers/backend.ts'

function peakRssKiB (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1])
}

const MiB = 1024 * 1024

t.test('a 64 MiB upload and download stream through with bounded proxy memory', async (t) => {
  const vm = await startBackend(t, (req, res) => {
    if (req.method === 'POST') {
      let received = 0
      const uploadHash = createHash('sha256')
      req.on('data', (c: Buffer) => { received += c.length; uploadHash.update(c) })
      req.on('end', () => { res.end(JSON.stringify({ received, sha256: uploadHash.digest('hex') })) })
      return
    }
    // download: 64 MiB written with backpressure
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    const chunk = Buffer.alloc(256 * 1024, 7)
    let left = 64 * MiB
    const pump = (): void => {
      while (left > 0) {
        left -= chunk.length
        if (!res.write(chunk)) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'big.test', target: vm.origin }]) })
  const pid = proxy.child.pid!
  // warm up so the baseline includes the code paths
  await (await request(`http://127.0.0.1:${proxy.ports.http}/`, { method: 'POST', headers: { host: 'big.test' }, body: 'x' })).body.text()
  const base = peakRssKiB(pid)

  const sent = createHash('sha256')
  let produced = 0
  const block = Buffer.alloc(64 * 1024, 1)
  const body = new Readable({
    read () {
      if (produced >= 64 * MiB) { this.push(null); return }
      produced += block.length
      sent.update(block)
      this.push(block)
    }
  })
  const res = await request(`http://127.0.0.1:${proxy.ports.http}/upload`, { method: 'POST', headers: { host: 'big.test' }, body })
  const answer = JSON.parse(await res.body.text()) as { received: number, sha256: string }
  t.equal(res.statusCode, 200)
  t.equal(answer.received, 64 * MiB, 'every byte reached the VM')
  t.equal(answer.sha256, sent.digest('hex'), 'the bytes are intact')
  const uploadGrowthMiB = (peakRssKiB(pid) - base) / 1024
  t.comment(`proxy peak RSS growth during the 64 MiB upload: ${uploadGrowthMiB.toFixed(1)} MiB`)
  t.ok(uploadGrowthMiB < 64, `upload: peak RSS grew by ${uploadGrowthMiB.toFixed(1)} MiB, less than the body`)

  const down = await request(`http://127.0.0.1:${proxy.ports.http}/download`, { headers: { host: 'big.test' } })
  let got = 0
  for await (const chunk of down.body) got += (chunk as Buffer).length
  t.equal(got, 64 * MiB, 'the whole download arrived')

  // Buffers awaiting GC make RSS grow some (measured: +37 MiB for 64 MiB, +74 MiB
  // for 512 MiB): bounded, and below the body size, which whole buffering would exceed.
  const growthMiB = (peakRssKiB(pid) - base) / 1024
  t.comment(`proxy peak RSS growth during 2 x 64 MiB: ${growthMiB.toFixed(1)} MiB`)
  t.ok(growthMiB < 96, `peak RSS grew by ${growthMiB.toFixed(1)} MiB for 128 MiB moved (< 96 MiB: no body was held whole)`)
})

/** Polls `read` every 100 ms until it stops changing for 500 ms (or 10 s pass). */
async function settled (read: () => number): Promise<number> {
  let last = -1
  let stable = 0
  for (let i = 0; i < 100 && stable < 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    const now = read()
    stable = now === last ? stable + 1 : 0
    last = now
  }
  return last
}

t.test('backpressure: a stalled VM stalls the uploader, a stalled client stalls the VM', async (t) => {
  let resumeUpload!: () => void
  let downloadWritten = 0
  const vm = await startBackend(t, (req, res) => {
    if (req.method === 'POST') {
      req.pause()
      resumeUpload = () => { req.resume(); req.on('end', () => { res.end('done') }) }
      return
    }
    res.writeHead(200)
    const chunk = Buffer.alloc(64 * 1024, 7)
    const pump = (): void => {
      while (downloadWritten < 256 * MiB) {
        downloadWritten += chunk.length
        if (!res.write(chunk)) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'bp.test', target: vm.origin }]) })

  let produced = 0
  const block = Buffer.alloc(64 * 1024, 1)
  const body = new Readable({
    read () {
      if (produced >= 256 * MiB) { this.push(null); return }
      produced += block.length
      this.push(block)
    }
  })
  const upload = request(`http://127.0.0.1:${proxy.ports.http}/up`, { method: 'POST', headers: { host: 'bp.test' }, body })
  const stalledAt = await settled(() => produced)
  t.ok(stalledAt < 32 * MiB, `the uploader stalled after ${(stalledAt / MiB).toFixed(1)} MiB of 256 MiB`)
  resumeUpload()
  t.equal(await (await upload).body.text(), 'done')

  const down = await request(`http://127.0.0.1:${proxy.ports.http}/down`, { headers: { host: 'bp.test' } })
  const vmStalledAt = await settled(() => downloadWritten)
  t.ok(vmStalledAt < 32 * MiB, `the VM stalled after writing ${(vmStalledAt / MiB).toFixed(1)} MiB of 256 MiB`)
  let got = 0
  for await (const chunk of down.body) got += (chunk as Buffer).length
  t.equal(got, 256 * MiB)
})

t.test('server-sent events arrive as they are sent', async (t) => {
  let release!: () => void
  const firstSeen = new Promise<void>((resolve) => { release = resolve })
  const vm = await startBackend(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    res.write('data: one\n\n')
    void firstSeen.then(() => { res.end('data: two\n\n') })
  })
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'sse.test', target: vm.origin }]) })
  const res = await request(`http://127.0.0.1:${proxy.ports.http}/events`, { headers: { host: 'sse.test' } })
  t.equal(res.headers['content-type'], 'text/event-stream')
  let text = ''
  for await (const chunk of res.body) {
    text += (chunk as Buffer).toString()
    // The backend only ends after we saw the first event: buffering would deadlock here.
    if (text.includes('data: one')) release()
  }
  t.equal(text, 'data: one\n\ndata: two\n\n')
})

t.test('a WebSocket round trip goes through, with the real client IP', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'ws.test', target: vm.origin }]) })
  const { head, echo } = await webSocketRoundTrip(proxy.ports.http, 'ws.test', 'hello')
  t.match(head, /^HTTP\/1.1 101/)
  t.match(head, /X-Seen-Real-IP: 127\.0\.0\.1/i)
  t.equal(echo, 'echo:hello')
  const unknown = await webSocketRoundTrip(proxy.ports.http, 'nobody.test', 'x')
  t.match(unknown.head, /^HTTP\/1.1 404/, 'an upgrade for an unknown host gets 404')
})
