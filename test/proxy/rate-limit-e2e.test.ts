// Rate-limit profiles through a real proxy: 429 after the burst, VIPs, delays,
// slots freed by disconnecting clients, and a flood of distinct IPs.
import t from 'tap'
import net from 'node:net'
import { readFileSync } from 'node:fs'
import { Pool, request } from 'undici'
import { startProxyProcess, routesDoc, metricValue } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'

const PROFILES = `
[headers]
trusted_proxies = ["127.0.0.1"]
[[rate_profile]]
name = "default"
[[rate_profile]]
name = "strict"
limit_burst_requests = 3
limit_requests_per_second = 0.2
vip_list = ["198.51.100.7", "2001:db8::/32"]
[[rate_profile]]
name = "smooth"
limit_burst_requests = 1
limit_requests_per_second = 10
limit_max_delay = "1s"
[[rate_profile]]
name = "single"
concurrent_max_requests = 1
concurrent_overflow_timeout = "3s"
[[rate_profile]]
name = "flood"
limit_burst_requests = 1000
limit_requests_per_second = 1000
`

t.test('rate profiles end to end', async (t) => {
  const held: Array<() => void> = []
  const vm = await startBackend(t, (req, res) => {
    if (req.url === '/hold') { held.push(() => res.end('held')); req.on('close', () => { if (!res.writableEnded) res.destroy() }); return }
    res.end('ok')
  })
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([
      { domain: 'strict.test', target: vm.origin, rate_profile: 'strict' },
      { domain: 'smooth.test', target: vm.origin, rate_profile: 'smooth' },
      { domain: 'single.test', target: vm.origin, rate_profile: 'single' },
      { domain: 'flood.test', target: vm.origin, rate_profile: 'flood' },
      { domain: 'free.test', target: vm.origin, rate_profile: 'nonexistent' }
    ]),
    toml: PROFILES
  })
  const url = `http://127.0.0.1:${proxy.ports.http}`
  const hit = async (host: string, ip: string, path = '/'): Promise<{ status: number, retryAfter: unknown, body: string }> => {
    const res = await request(url + path, { headers: { host, 'x-forwarded-for': ip } })
    return { status: res.statusCode, retryAfter: res.headers['retry-after'], body: await res.body.text() }
  }

  await t.test('429 after the burst, with the error page and Retry-After; other IPs unaffected', async (t) => {
    const statuses = []
    for (let i = 0; i < 5; i++) statuses.push((await hit('strict.test', '203.0.113.1')).status)
    t.same(statuses, [200, 200, 200, 429, 429])
    const refused = await hit('strict.test', '203.0.113.1')
    t.match(refused.body, /429/)
    t.ok(Number(refused.retryAfter) >= 1, 'Retry-After set')
    t.equal((await hit('strict.test', '203.0.113.2')).status, 200, 'another client has its own bucket')
    const m = await proxy.metrics()
    t.equal(metricValue(m, 'vmfront_rate_limited_total{profile="strict"}'), 3)
    t.ok(proxy.logs.some((l) => l.msg === 'rate limited' && l.reason === 'rate' && l.client === '203.0.113.1'), 'the log says why')
  })

  await t.test('VIPs are never limited (IPv4 and an IPv6 CIDR)', async (t) => {
    for (const ip of ['198.51.100.7', '2001:db8::42']) {
      const statuses = []
      for (let i = 0; i < 6; i++) statuses.push((await hit('strict.test', ip)).status)
      t.same(statuses, [200, 200, 200, 200, 200, 200], `${ip} is a VIP`)
    }
  })

  await t.test('a spoofed X-Forwarded-For from an untrusted peer does not change the client IP', async (t) => {
    // The proxy trusts 127.0.0.1 only; connect from 127.0.0.2 to be untrusted.
    const statuses: number[] = []
    for (let i = 0; i < 5; i++) {
      const status = await new Promise<number>((resolve, reject) => {
        const s = net.connect({ port: proxy.ports.http, host: '127.0.0.1', localAddress: '127.0.0.2' })
        let data = ''
        s.on('data', (c) => { data += c.toString() })
        s.on('end', () => { resolve(Number(data.slice(9, 12))) })
        s.on('error', reject)
        s.write(`GET / HTTP/1.1\r\nHost: strict.test\r\nX-Forwarded-For: 10.9.${i}.1\r\nConnection: close\r\n\r\n`)
      })
      statuses.push(status)
    }
    t.same(statuses, [200, 200, 200, 429, 429], 'limited as 127.0.0.2 whatever the header says')
  })

  await t.test('the delay path slows requests instead of refusing them', async (t) => {
    const started = Date.now()
    const results = await Promise.all([1, 2, 3, 4].map(async () => await hit('smooth.test', '203.0.113.9')))
    const elapsed = Date.now() - started
    t.same(results.map((r) => r.status), [200, 200, 200, 200], 'none refused')
    t.ok(elapsed >= 250, `spread over ${elapsed} ms by the 10/s bucket`)
  })

  await t.test('a concurrency slot is freed when the client disconnects mid-request', async (t) => {
    const ip = '203.0.113.20'
    const first = net.connect(proxy.ports.http, '127.0.0.1')
    first.on('error', () => {})
    first.write(`GET /hold HTTP/1.1\r\nHost: single.test\r\nX-Forwarded-For: ${ip}\r\n\r\n`)
    for (let i = 0; i < 100 && held.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    t.equal(held.length, 1, 'the first request holds the only slot')
    const second = hit('single.test', ip)
    first.destroy()
    const res = await second
    t.equal(res.status, 200, 'the waiting request got the freed slot')
  })

  await t.test('an unknown profile falls back to default (unlimited) with a warning at load', async (t) => {
    t.ok(proxy.logs.some((l) => l.msg === 'route file warning' && String(l.problem).includes('nonexistent')))
    const statuses = []
    for (let i = 0; i < 10; i++) statuses.push((await hit('free.test', '203.0.113.30')).status)
    t.ok(statuses.every((s) => s === 200))
  })

  await t.test('100,000 distinct client IPs leave memory bounded', async (t) => {
    const pid = proxy.child.pid!
    const rssKiB = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1])
    const pool = new Pool(url, { connections: 32, pipelining: 4 })
    t.teardown(() => pool.close())
    const total = 100_000
    let next = 0
    let ok = 0
    const worker = async (end: number): Promise<void> => {
      while (next < end) {
        const i = next++
        const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
        const res = await pool.request({ path: '/', method: 'GET', headers: { host: 'flood.test', 'x-forwarded-for': ip } })
        await res.body.dump()
        if (res.statusCode === 200) ok++
      }
    }
    // V8 sizes its heap to the load first (measured: +150 MiB in the first 100k
    // requests, then flat, with or without rate limits), so compare two halves:
    // per-IP state that leaked would make the second half grow like the first.
    await Promise.all(Array.from({ length: 128 }, async () => { await worker(total / 2) }))
    const half = rssKiB()
    await Promise.all(Array.from({ length: 128 }, async () => { await worker(total) }))
    const growthMiB = (rssKiB() - half) / 1024
    t.equal(ok, total, 'every request answered 200')
    t.comment(`proxy RSS: ${(half / 1024).toFixed(1)} MiB after 50,000 distinct IPs, ${growthMiB.toFixed(1)} MiB more after 50,000 others`)
    t.ok(growthMiB < 128, `the second 50,000 IPs grew RSS by ${growthMiB.toFixed(1)} MiB (bounded; V8 heap sizing dominates)`)
    // The proof of bounded state: per-IP entries expire once idle (sweep every 10 s).
    const tracked = async (): Promise<number> => metricValue(await proxy.metrics(), 'vmfront_rate_limit_tracked_ips{profile="flood"}') ?? -1
    const peak = await tracked()
    t.ok(peak <= total, `at most ${total} IPs tracked right after the flood (${peak})`)
    let now = peak
    for (let i = 0; i < 60 && now > 100; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250))
      now = await tracked()
    }
    t.ok(now <= 100, `idle per-IP state expired: ${peak} tracked after the flood, ${now} after the sweep`)
  })
  for (const release of held) release()
})
