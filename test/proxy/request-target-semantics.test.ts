// The request-target rules of RFC 9112 §3.2 as a table: absolute-form targets split into
// authority and origin-form path, duplicate Host lines, and the in-place rewrite.
import t from 'tap'
import { IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import { hasDuplicateHost, splitAbsoluteTarget, toOriginForm } from '../../proxy/request-target.ts'

t.test('splitAbsoluteTarget', async (t) => {
  const cases: Array<[string, { authority: string, path: string } | undefined]> = [
    ['http://app.test/x?y=1', { authority: 'app.test', path: '/x?y=1' }],
    ['https://app.test:8443/', { authority: 'app.test:8443', path: '/' }],
    ['HTTP://App.Test', { authority: 'App.Test', path: '/' }],
    ['http://app.test?q', { authority: 'app.test', path: '/?q' }],
    ['http://[::1]:8080/p', { authority: '[::1]:8080', path: '/p' }],
    ['http://a_b.test/p', { authority: 'a_b.test', path: '/p' }],
    ['http://user:pw@app.test/', undefined],
    ['http://app.test#frag', undefined],
    ['http:///x', undefined],
    ['http://', undefined],
    ['ftp://app.test/', undefined],
    ['httpx://app.test/', undefined],
    ['app.test:443', undefined],
    ['*', undefined],
    ['http://app test/', undefined],
    ['http://app.test\\evil/', undefined]
  ]
  for (const [target, expected] of cases) t.same(splitAbsoluteTarget(target), expected, target)
})

t.test('hasDuplicateHost', async (t) => {
  t.equal(hasDuplicateHost(['Host', 'a', 'Accept', '*/*']), false)
  t.equal(hasDuplicateHost(['Host', 'a', 'HOST', 'b']), true, 'any case')
  t.equal(hasDuplicateHost(['host', 'a', 'X-Host', 'b', 'Hosts', 'c']), false, 'only the Host name counts')
  t.equal(hasDuplicateHost([]), false)
})

t.test('toOriginForm rewrites url, Host and the raw Host line', async (t) => {
  const req = new IncomingMessage(new Socket())
  req.url = 'http://other.test:81/x?y'
  req.rawHeaders = ['Host', 'app.test', 'Accept', '*/*']
  req.headers = { host: 'app.test', accept: '*/*' }
  toOriginForm(req, { authority: 'other.test:81', path: '/x?y' })
  t.equal(req.url, '/x?y')
  t.equal(req.headers.host, 'other.test:81')
  t.same(req.rawHeaders, ['Host', 'other.test:81', 'Accept', '*/*'])
  const bare = new IncomingMessage(new Socket())
  bare.rawHeaders = []
  bare.headers = {}
  toOriginForm(bare, { authority: 'other.test', path: '/' })
  t.same(bare.rawHeaders, ['Host', 'other.test'], 'HTTP/1.0 without Host gets one')
})
