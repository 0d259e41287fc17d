/**
 * @module proxy/takeover
 * `vmfront proxy --takeover` (SPEC §12): a new process takes the running one's
 * listening sockets, serves them, and only then tells it to drain. The sockets
 * themselves change hands (SCM_RIGHTS over a Unix socket, as HAProxy's socket
 * transfer and nginx's binary upgrade do), not copies bound with SO_REUSEPORT: a
 * connection waiting in the accept queue belongs to the socket, so when the old
 * process closes its descriptor the queue is still open in the new one and nothing
 * queued is reset (with SO_REUSEPORT alone, the kernel resets what was queued on
 * the closed copy unless net.ipv4.tcp_migrate_req = 1).
 *
 * Node passes handles only to its own children through public API; between two
 * unrelated processes this module drives the same libuv IPC pipe that API uses
 * (process.binding('pipe_wrap'), IPC mode). The old process is the listening side
 * ($TMPDIR/vmfront-UID/, mode 0600, so only the proxy's own user can ask); one
 * handle per message, each asked for by the new process, so no two descriptors
 * ever share a read.
 *
 * Protocol, one JSON object per line: new → {op:"hello"}; old → {name, ...}
 * with one listening socket each, then {done:true, pid}; new → {op:"drain"} once it
 * serves; old → {op:"draining"} and starts its drain.
 */
import net from 'node:net'
import { createHash } from 'node:crypto'
import { chmodSync, lstatSync, mkdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { ListenHandle } from './listen-handle.ts'
import { ProxyError } from './errors.ts'

interface RawPipe {
  open (fd: number): number
  connect (req: unknown, path: string): number
  readStart (): number
  readStop (): number
  close (cb?: () => void): void
  writeUtf8String (req: unknown, text: string, handle?: unknown): number
  onread: ((buffer: ArrayBuffer | undefined) => void) | null
  pendingHandle: unknown
}
interface PipeBinding {
  Pipe: new (type: number) => RawPipe
  PipeConnectWrap: new () => { oncomplete: (status: number) => void }
  constants: { IPC: number }
}
interface StreamBinding {
  WriteWrap: new () => { handle: unknown, oncomplete: (status: number) => void, async: boolean }
  streamBaseState: Int32Array
  kReadBytesOrError: number
  kArrayBufferOffset: number
}

// process.binding is deprecated (DEP0111) but is the only way to an IPC pipe to a
// process that is not our child; both modules are on its allow-list.
const binding = (process as unknown as { binding: (name: string) => unknown }).binding
const pipeWrap = binding('pipe_wrap') as PipeBinding
const streamWrap = binding('stream_wrap') as StreamBinding

/**
 * Where the proxy of `pidFile` listens for a takeover: named after the PID file
 * (which names the process a takeover replaces, SPEC §12), in a directory of this
 * user's own under the temporary directory (0700, checked: not a link, not someone
 * else's), so neither data_dir nor the PID file's folder holds anything new.
 * @throws ProxyError TAKEOVER_FAILED when that directory is unsafe
 */
export function takeoverSocketPath (pidFile: string): string {
  const uid = process.getuid?.() ?? 0
  const dir = join(tmpdir(), `vmfront-${uid}`)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const st = lstatSync(dir)
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw new ProxyError('TAKEOVER_FAILED', `${dir} must be a directory of user ${uid} with mode 0700 (it holds the takeover socket)`)
  }
  const name = createHash('sha256').update(resolve(pidFile)).digest('hex').slice(0, 16)
  return join(dir, `takeover-${name}.sock`)
}

type Message = Record<string, unknown>

/** How long a peer of the takeover socket may take to say hello. */
const HELLO_TIMEOUT_MS = 10_000


/** Line-framed JSON over a raw IPC pipe, with at most one handle per message. */
function channel (pipe: RawPipe, onMessage: (m: Message, handle: unknown) => void, onClose: () => void): { send: (m: Message, handle?: unknown) => void } {
  let buffered = ''
  pipe.onread = (arrayBuffer) => {
    const nread = streamWrap.streamBaseState[streamWrap.kReadBytesOrError]
    let handle = pipe.pendingHandle
    pipe.pendingHandle = null
    if (arrayBuffer === undefined || nread < 0) {
      onClose()
      return
    }
    buffered += Buffer.from(arrayBuffer, streamWrap.streamBaseState[streamWrap.kArrayBufferOffset], nread).toString('utf8')
    let nl = buffered.indexOf('\n')
    while (nl !== -1) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      let message: Message
      try {
        message = JSON.parse(line) as Message
      } catch {
        onClose()
        return
      }
      onMessage(message, handle)
      handle = undefined
      nl = buffered.indexOf('\n')
    }
  }
  pipe.readStart()
  return {
    send (m, handle) {
      const req = new streamWrap.WriteWrap()
      req.handle = pipe
      req.async = false
      req.oncomplete = () => {}
      const err = handle === undefined ? pipe.writeUtf8String(req, JSON.stringify(m) + '\n') : pipe.writeUtf8String(req, JSON.stringify(m) + '\n', handle)
      if (err !== 0) onClose()
    }
  }
}

export interface TakeoverServer {
  close (): void
}

/**
 * The running proxy's side: hands `handles()` to a takeover and calls `drain()`
 * once the new process says it serves them.
 */
export function serveTakeover (pidFile: string, options: {
  handles: () => ReadonlyMap<string, ListenHandle>
  drain: (newPid: number) => void
  log: (msg: string, fields: Record<string, unknown>) => void
}): Promise<TakeoverServer> {
  let path: string
  try {
    path = takeoverSocketPath(pidFile)
  } catch (err) {
    return Promise.reject(err)
  }
  rmSync(path, { force: true })
  let serverClosed = false
  // Closing a listening Unix socket server unlinks its path (libuv): once only.
  const closeServer = (): void => {
    if (serverClosed) return
    serverClosed = true
    server.close()
  }
  const server = net.createServer({ pauseOnConnect: true }, (conn) => {
    const fd = (conn as unknown as { _handle?: { fd?: number } })._handle?.fd
    if (typeof fd !== 'number' || fd < 0) {
      conn.destroy()
      return
    }
    // The IPC pipe owns the descriptor from here; the paused net.Socket is never
    // read or closed (closing it too would close a descriptor number twice).
    const pipe = new pipeWrap.Pipe(pipeWrap.constants.IPC)
    if (pipe.open(fd) !== 0) {
      conn.destroy()
      return
    }
    const queue = [...options.handles()]
    let newPid = 0
    // A peer that connects and then says nothing does not hold the pipe forever.
    const idle = setTimeout(() => { done() }, HELLO_TIMEOUT_MS)
    idle.unref()
    let closed = false
    const done = (): void => {
      if (closed) return
      closed = true
      clearTimeout(idle)
      pipe.close()
    }
    const ch = channel(pipe, (m) => {
      if (m.op === 'hello' || m.op === 'next') {
        clearTimeout(idle)
        if (m.op === 'hello') {
          newPid = typeof m.pid === 'number' ? m.pid : 0
          options.log('takeover asked: handing over the listening sockets', { new_pid: newPid, listeners: queue.map(([name]) => name) })
        }
        const next = queue.shift()
        if (next === undefined) ch.send({ done: true, pid: process.pid })
        else ch.send({ name: next[0] }, next[1])
      } else if (m.op === 'drain') {
        // Our socket file goes first (closing the server unlinks its path): the new
        // process makes its own as soon as it reads "draining", and an unlink after
        // that would remove the new one. The drain starts before the answer too: it
        // stops accepting on every socket at once (synchronously), and once the new
        // process reads "draining" it says it serves (`--detach` returns): a
        // connection made after that must not be accepted here, where it would be
        // closed with the admin listener at the end of this drain.
        closeServer()
        options.drain(newPid)
        ch.send({ op: 'draining' })
      }
    }, done)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => {
      server.off('error', reject)
      try { chmodSync(path, 0o600) } catch { /* the directory's mode still protects it */ }
      resolve({ close: closeServer })
    })
  })
}

export interface TakenOver {
  /** Listening sockets by listener name ("http", "https", "admin"). */
  readonly handles: Map<string, ListenHandle>
  /** The old process's PID. */
  readonly pid: number
  /** Tells the old process to drain and exit; resolves when it said it will. */
  drain (): Promise<void>
}

/**
 * The new process's side: takes the listening sockets of the proxy serving
 * `pidFile`. @throws ProxyError TAKEOVER_FAILED (nothing to take over, or it stopped answering)
 */
export function requestTakeover (pidFile: string, timeoutMs = 10_000): Promise<TakenOver> {
  return new Promise((resolve, reject) => {
    let path: string
    try {
      path = takeoverSocketPath(pidFile)
    } catch (err) {
      reject(err)
      return
    }
    const pipe = new pipeWrap.Pipe(pipeWrap.constants.IPC)
    const handles = new Map<string, ListenHandle>()
    let drained: (() => void) | undefined
    let settled = false
    const timer = setTimeout(() => { fail('the running proxy did not answer') }, timeoutMs)
    function fail (why: string): void {
      if (settled) return
      settled = true
      clearTimeout(timer)
      for (const h of handles.values()) h.close()
      pipe.close()
      reject(new ProxyError('TAKEOVER_FAILED', `cannot take over from the proxy of ${pidFile}: ${why}`))
    }
    const req = new pipeWrap.PipeConnectWrap()
    req.oncomplete = (status) => {
      if (status !== 0) {
        fail(`no proxy listens on ${path} (${status === -2 ? 'no such socket: is one running with this pid_file?' : `error ${status}`})`)
        return
      }
      const ch = channel(pipe, (m, handle) => {
        if (typeof m.name === 'string' && handle !== undefined) {
          handles.set(m.name, handle as ListenHandle)
          ch.send({ op: 'next' })
        } else if (m.done === true) {
          settled = true
          clearTimeout(timer)
          resolve({
            handles,
            pid: typeof m.pid === 'number' ? m.pid : 0,
            drain: () => new Promise<void>((resolveDrain) => {
              drained = () => { pipe.close(); resolveDrain() }
              ch.send({ op: 'drain' })
            })
          })
        } else if (m.op === 'draining') {
          drained?.()
        }
      }, () => {
        if (!settled) fail('it closed the connection')
        else drained?.()
      })
      ch.send({ op: 'hello', pid: process.pid })
    }
    const err = pipe.connect(req, path)
    if (err !== 0) fail(`cannot connect to ${path} (error ${err})`)
  })
}
