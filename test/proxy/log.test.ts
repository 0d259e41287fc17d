// Log lines are bounded whatever the fields hold (issue 9 point 7), and the line sink bounds what it buffers.
import t from 'tap'
import { Writable } from 'node:stream'
import { createLogger, MAX_FIELD_CHARS, MAX_LINE_CHARS } from '../../proxy/log.ts'
import { createLineSink, MAX_BUFFERED_BYTES, type LineSink } from '../../proxy/line-sink.ts'

function capture (): { sink: LineSink, lines: string[] } {
  const lines: string[] = []
  return { lines, sink: { write: (line) => { lines.push(line) }, flush: () => {} } }
}

t.test('a 5 MB field value is cut at 4 KiB with its size noted, at any depth', async (t) => {
  const { sink, lines } = capture()
  const logger = createLogger({ sink, base: { component: 'proxy' } })
  const huge = 'h'.repeat(5 * 1024 * 1024)
  logger.warn('bad request', { host: huge, headers: { 'x-big': huge }, list: [huge] })
  t.equal(lines.length, 1)
  t.ok(lines[0].length < 4 * MAX_FIELD_CHARS, `line of ${lines[0].length} characters`)
  const entry = JSON.parse(lines[0]) as { host: string, headers: Record<string, string>, list: string[], component: string, level: string, msg: string }
  t.equal(entry.host, `${'h'.repeat(MAX_FIELD_CHARS)}…(5242880 bytes)`)
  t.equal(entry.headers['x-big'], entry.host)
  t.equal(entry.list[0], entry.host)
  t.match(entry, { level: 'warn', msg: 'bad request', component: 'proxy' })
  const child = logger.child({ peer: huge })
  child.info('x')
  t.ok(lines[1].length < 2 * MAX_FIELD_CHARS, 'bound fields of a child logger too')
  logger.info('multi-byte', { v: 'é'.repeat(MAX_FIELD_CHARS + 1) })
  t.match(JSON.parse(lines[2]), { v: /…\(8194 bytes\)$/ }, 'the size is in bytes')
  logger.info('surrogates', { v: '😀'.repeat(MAX_FIELD_CHARS) })
  t.notMatch(lines[3], /\\ud83d"|\\ud83d…/i, 'a surrogate pair is never split')
})

t.test('long arrays, many keys, deep nesting and cycles are bounded; errors stay small', async (t) => {
  const { sink, lines } = capture()
  const logger = createLogger({ sink })
  logger.warn('chain lease expired: routes dropped', { domains: Array.from({ length: 10_000 }, (_, i) => `d${i}.test`) })
  const domains = (JSON.parse(lines[0]) as { domains: string[] }).domains
  t.equal(domains.length, 101)
  t.equal(domains[100], '…(9900 more items)')
  const wide = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, i]))
  logger.info('wide', { wide })
  t.equal((JSON.parse(lines[1]) as { wide: Record<string, unknown> }).wide['…'], '900 more keys')
  const cycle: Record<string, unknown> = { name: 'loop' }
  cycle.self = cycle
  logger.info('cycle', { cycle })
  t.match(lines[2], /nested too deep/, 'a cycle ends at the depth bound instead of throwing')
  const a = new Error('outer', { cause: new Error('inner') })
  ;(a.cause as Error).cause = a
  logger.error('cause cycle', { err: a })
  t.match(JSON.parse(lines[3]), { err: { message: 'outer', name: 'Error', cause: { message: 'inner' } } })
  t.notMatch(lines[3], /at .*\.ts:\d+/, 'no stack')
  logger.info('buffer', { body: Buffer.alloc(5 * 1024 * 1024) })
  t.match(JSON.parse(lines[4]), { body: '…(a Buffer of 5242880 bytes)' })
  logger.info('proto', JSON.parse('{"__proto__": "kept"}') as Record<string, unknown>)
  t.match(JSON.parse(lines[5]), { msg: 'proto' })
  logger.info('nested proto', { v: JSON.parse('{"__proto__": {"x": 1}}') as unknown })
  t.match(lines[6], '"__proto__":{"x":1}', 'a "__proto__" key from input stays a key')
})

t.test('a line still too long after the field bounds is rebuilt tighter', async (t) => {
  const { sink, lines } = capture()
  const logger = createLogger({ sink })
  const fields = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`f${i}`, 'v'.repeat(MAX_FIELD_CHARS)]))
  logger.info('many big fields', fields)
  t.ok(lines[0].length <= MAX_LINE_CHARS, `${lines[0].length} characters`)
  const entry = JSON.parse(lines[0]) as Record<string, string>
  t.equal(entry.msg, 'many big fields')
  t.match(entry.f0, /^v{256}…\(4096 bytes\)$/)
})

t.test('the line sink drops (and later counts) lines while its output holds more than the bound', async (t) => {
  const written: string[] = []
  let release!: () => void
  // an output that accepts the first write and then stays busy until released
  const out = new Writable({
    highWaterMark: 1,
    write (chunk: Buffer, _enc, done) {
      written.push(chunk.toString())
      if (written.length === 1) release = done
      else done()
    }
  })
  const sink = createLineSink(out)
  sink.write('x'.repeat(MAX_BUFFERED_BYTES + 1))
  sink.flush() // being written: the output now holds more than the bound
  t.ok(out.writableLength > MAX_BUFFERED_BYTES, 'the output is behind')
  sink.write('dropped 1')
  sink.write('dropped 2')
  sink.flush()
  t.equal(written.length, 1, 'nothing more reached the output')
  release()
  await new Promise((resolve) => setImmediate(resolve))
  sink.write('after')
  sink.flush()
  await new Promise((resolve) => setImmediate(resolve))
  const tail = written.slice(1).join('')
  t.notOk(tail.includes('dropped 1') || tail.includes('dropped 2'), 'the lines written while the output was behind were dropped')
  t.match(tail, /^\{"time":"[^"]+","level":"warn","msg":"log lines dropped: the log output was not keeping up","dropped":2\}\nafter\n$/, 'and counted once it caught up')
})
