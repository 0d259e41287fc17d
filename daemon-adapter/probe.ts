/**
 * @module daemon-adapter/probe
 * Decides when a new revision is "up": with `up_probe = "tcp"`, when every port its
 * domains point at accepts a TCP connection; polled until a deadline.
 */
import { connect } from 'node:net'
import { AdapterError } from './errors.ts'

/** Tries one TCP connection; true when it is accepted within `timeoutMs`. */
export function tcpAccepts (host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    const done = (ok: boolean): void => {
      socket.destroy()
      clearTimeout(timer)
      resolve(ok)
    }
    const timer = setTimeout(() => { done(false) }, timeoutMs)
    socket.once('connect', () => { done(true) })
    socket.once('error', () => { done(false) })
  })
}

/**
 * Waits until every `host:port` accepts connections, polling every `intervalMs`.
 * @throws AdapterError VM_NOT_UP when `timeoutMs` passes first, or when `signal` aborts
 */
export async function waitForTcp (host: string, ports: readonly number[], options: { timeoutMs: number, intervalMs?: number, signal?: AbortSignal }): Promise<void> {
  const deadline = Date.now() + options.timeoutMs
  const interval = options.intervalMs ?? 250
  const waiting = new Set(ports)
  while (waiting.size > 0) {
    for (const port of [...waiting]) {
      if (await tcpAccepts(host, port, Math.min(2000, Math.max(1, deadline - Date.now())))) waiting.delete(port)
    }
    if (waiting.size === 0) return
    if (options.signal?.aborted === true) throw new AdapterError('VM_NOT_UP', `stopped waiting for ${host} (shutting down)`)
    if (Date.now() + interval > deadline) {
      throw new AdapterError('VM_NOT_UP', `${host} did not accept connections on port ${[...waiting].join(', ')} within ${options.timeoutMs} ms`)
    }
    await new Promise((resolve) => setTimeout(resolve, interval))
  }
}
