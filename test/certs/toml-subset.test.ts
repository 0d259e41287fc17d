// The TOML subset of extra_certs_file: what parses, and what is rejected with a line number.
import t from 'tap'
import { parseTomlSubset, TomlSyntaxError } from '../../certs/toml-subset.ts'

t.test('parses the extra certificates shape', async (t) => {
  const doc = parseTomlSubset([
    '# user certificates',
    '[[certificate]]',
    'domains  = ["example.com", "www.example.com"]   # both names',
    'certfile = "/etc/ssl/certs/example.com.crt"',
    "keyfile  = '/etc/ssl/private/example.com.key'",
    '',
    '[[ certificate ]]',
    'domains = [',
    '  "a.test",',
    "  'b.test', # trailing comma allowed",
    ']',
    'certfile = "c:\\\\certs\\\\a.crt"',
    'keyfile = "\\u00e9.key"',
    'enabled = true',
    'n = 1_000',
    ''
  ].join('\r\n'))
  t.same(doc, {
    certificate: [
      { domains: ['example.com', 'www.example.com'], certfile: '/etc/ssl/certs/example.com.crt', keyfile: '/etc/ssl/private/example.com.key' },
      { domains: ['a.test', 'b.test'], certfile: 'c:\\certs\\a.crt', keyfile: 'é.key', enabled: true, n: 1000 }
    ]
  })
  t.same(parseTomlSubset(''), {})
  t.same(parseTomlSubset('key = "v"\n'), { key: 'v' })
})

t.test('rejects what it does not understand, with the line', async (t) => {
  const bad: Array<[string, number, RegExp]> = [
    ['[certificate]\n', 1, /only \[\[array\]\] tables/],
    ['[[certificate]]\ndomains = ["a"\n', 3, /expected , or \]/],
    ['a = "x"\na = "y"\n', 2, /duplicate key a/],
    ['a = "unterminated\n', 1, /unterminated string/],
    ['a = """multi"""\n', 1, /multi-line/],
    ['a = 1.5\n', 1, /unsupported value/],
    ['a = {}\n', 1, /unsupported value/],
    ['a = "x" b = "y"\n', 1, /unexpected "b"/],
    ['= "x"\n', 1, /expected a key/],
    ['a "x"\n', 1, /expected = after a/],
    ['a = "\\q"\n', 1, /invalid escape/],
    ['a = "x"\n[[a]]\n', 2, /already a value/]
  ]
  for (const [text, line, message] of bad) {
    let err: unknown
    try { parseTomlSubset(text) } catch (e) { err = e }
    t.ok(err instanceof TomlSyntaxError, `${JSON.stringify(text)}: syntax error`)
    t.equal((err as TomlSyntaxError).line, line, `${JSON.stringify(text)}: line`)
    t.match((err as Error).message, message)
  }
})
