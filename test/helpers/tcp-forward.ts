/**
 * Helpers for the TCP port forwarding tests (SPEC §11): echo and sink servers on
 * loopback, a proxy process with a Mulch port file, clients bound to a chosen
 * 127.0.0.x source address (distinct "VM IPs" on one machine).
 */
import net, { type Server, type Socket } from 'node:net'
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startProxyProcess, type ProxyOptions, type ProxyProcess } from './proxy-process.ts'
import { freePort } from './pebble.ts'

interface Teardown { teardown (fn: () => unknown): void }

export { freePort }

/** Starts a TCP server on 127.0.0.1 (port 0), destroyed at teardown. */
export async function startTcpServer (t: Teardown, onSocket: (s: Socket) => void, host = '127.0.0.1'): Promise<{ server: Server, port: number, sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s)
    s.on('close', () => { sockets.delete(s) })
    s.on('error', () => {})
    onSocket(s)
  })
  await new Promise<void>((resolve) => { server.listen(0, host, resolve) })
  t.teardown(() => { for (const s of sockets) s.destroy(); server.close() })
  return { server, port: (server.address() as net.AddressInfo).port, sockets }
}

/** An echo server: everything read is written back; its FIN answers ours. */
export async function startEcho (t: Teardown): Promise<{ port: number, sockets: Set<Socket> }> {
  return await startTcpServer(t, (s) => { s.pipe(s) })
}

/** A Mulch port file entry: `forwards` maps source ("*" or an IP) to [destPort, proxyProtoPort]. */
export function mulchPort (listenPort: number, forwards: Record<string, [number, number?]>, listenIp = '127.0.0.1'): Record<string, unknown> {
  return {
    [String(listenPort)]: {
      ListenAddr: { IP: listenIp, Port: listenPort, Zone: '' },
      Forwards: Object.fromEntries(Object.entries(forwards).map(([src, [port, pp]]) => [src, { Dest: { IP: '127.0.0.1', Port: port, Zone: '' }, PROXYProtoPort: pp ?? 0 }]))
    }
  }
}

export interface TcpProxy extends ProxyProcess {
  portsFile: string
  writePorts (doc: unknown): void
}

/** A proxy process with `ports_file` set (and optional route-file `ports`). */
export async function startTcpProxy (t: Teardown, ports: unknown, options: ProxyOptions & { tcpIdle?: string } = {}): Promise<TcpProxy> {
  let portsFile = ''
  const proxy = await startProxyProcess(t, {
    routes: { version: 1, routes: [] },
    ...options,
    beforeStart: (paths) => {
      portsFile = join(paths.dir, 'mulch-proxy-ports-v2.db')
      writeFileSync(portsFile, typeof ports === 'string' ? ports : JSON.stringify(ports))
      // The generated config's top level ends before [listen]: append ports_file there.
      const configFile = join(paths.dir, 'proxy.toml')
      const text = readFileSync(configFile, 'utf8')
      writeFileSync(configFile, `ports_file = ${JSON.stringify(portsFile)}\n` + text.replace('[listen]', options.tcpIdle !== undefined ? `[timeouts]\ntcp_idle = "${options.tcpIdle}"\ndrain = "5s"\n[listen]` : '[listen]'))
      options.beforeStart?.(paths)
    }
  })
  return {
    ...proxy,
    portsFile,
    writePorts (doc: unknown): void {
      writeFileSync(portsFile + '.tmp', typeof doc === 'string' ? doc : JSON.stringify(doc))
      renameSync(portsFile + '.tmp', portsFile)
    }
  }
}

/** Connects from `localAddress` (a 127.0.0.x "VM IP") with half-open allowed. */
export function connectFrom (port: number, localAddress = '127.0.0.1', host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress, allowHalfOpen: true })
    // After connect, a reset shows as 'close' to the readers here; an unhandled
    // 'error' would only crash the test.
    s.once('connect', () => { s.off('error', reject); s.on('error', () => {}); resolve(s) })
    s.once('error', reject)
  })
}

/**
 * Reads until the peer ends (FIN) or the socket closes (RST); resolves with what
 * came and whether it ended with a FIN. Our side is then ended too.
 */
export function readToEnd (s: Socket, timeoutMs = 5000): Promise<{ data: Buffer, ended: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const timer = setTimeout(() => { reject(new Error(`no end within ${timeoutMs} ms (got ${Buffer.concat(chunks).length} bytes)`)) }, timeoutMs)
    const done = (ended: boolean): void => { clearTimeout(timer); s.end(); resolve({ data: Buffer.concat(chunks), ended }) }
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('end', () => { done(true) })
    s.on('error', () => {})
    s.on('close', () => { done(false) })
  })
}

/** Writes `text` and resolves with the first `text.length` bytes echoed back. */
export function echoOnce (s: Socket, text: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = ''
    const timer = setTimeout(() => { s.off('data', onData); reject(new Error(`echo of ${JSON.stringify(text)} not received (got ${JSON.stringify(got)})`)) }, timeoutMs)
    const onData = (c: Buffer): void => {
      got += c.toString('latin1')
      if (got.length >= text.length) { clearTimeout(timer); s.off('data', onData); resolve(got) }
    }
    s.on('data', onData)
    s.once('close', () => { clearTimeout(timer); s.off('data', onData); reject(new Error(`closed before the echo of ${JSON.stringify(text)} (got ${JSON.stringify(got)})`)) })
    s.write(text)
  })
}

/** The proxy process's resident set size in bytes (/proc). */
export function rssOf (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) * 1024
}
