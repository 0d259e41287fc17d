/**
 * Mulch's VM-to-VM imports through the proxy (SPEC §11): several route-file entries
 * on one address, each naming its source, share one listener that forwards by the
 * connecting VM's address (the gateway port every importing VM connects to).
 */
import t from 'tap'
import { startProxyProcess } from '../helpers/proxy-process.ts'
import { connectFrom, freePort, readToEnd, startTcpServer } from '../helpers/tcp-forward.ts'

t.test('one gateway port, two importing VMs: each source reaches its own target, anyone else is refused', async (t) => {
  const a = await startTcpServer(t, (s) => { s.end('from A\n') })
  const b = await startTcpServer(t, (s) => { s.end('from B\n') })
  const port = await freePort()
  const proxy = await startProxyProcess(t, {
    routes: {
      version: 1,
      routes: [],
      ports: [
        { listen: `127.0.0.1:${port}`, target: `127.0.0.1:${a.port}`, allow: ['127.0.0.2'] },
        { listen: `127.0.0.1:${port}`, target: `127.0.0.1:${b.port}`, allow: ['127.0.0.3'] }
      ]
    }
  })
  const fromA = await readToEnd(await connectFrom(port, '127.0.0.2'))
  t.equal(fromA.data.toString(), 'from A\n', 'the VM at 127.0.0.2 reaches target A')
  const fromB = await readToEnd(await connectFrom(port, '127.0.0.3'))
  t.equal(fromB.data.toString(), 'from B\n', 'the VM at 127.0.0.3 reaches target B')
  const stranger = await readToEnd(await connectFrom(port, '127.0.0.4'))
  t.equal(stranger.data.length, 0, 'another source is refused')
  const status = await (await fetch(`http://127.0.0.1:${proxy.ports.admin}/status`)).json() as { tcp_ports: Array<{ listen: string, forwards: unknown[] }> }
  t.equal(status.tcp_ports.length, 1, 'one listener')
  t.equal(status.tcp_ports[0].forwards.length, 2, 'with two forwards')
  t.equal(await proxy.stop(), 0)
})
