// The light position finders `vmfront check` uses: TOML key lines (smol-toml gives none),
// JSON path lines, and the first position where a text stops being JSON.
import t from 'tap'
import { jsonPathLines, jsonSyntaxPosition } from '../../proxy/json-positions.ts'
import { lineOfKey, tomlKeyAtLine, tomlKeyLines } from '../../proxy/toml-positions.ts'

t.test('TOML: keys, tables, arrays of tables, quoted and dotted keys; multi-line strings are text', async (t) => {
  const text = [
    'data_dir = "/x"', // 1
    '', // 2
    '[listen]', // 3
    '  http = "127.0.0.1:80"', // 4
    '[ chain ]', // 5
    'mode = "parent" # comment', // 6
    'note = """', // 7
    'psk = "inside a string"', // 8
    '"""', // 9
    '[[rate_profile]]', // 10
    'name = "a"', // 11
    '[[rate_profile]]', // 12
    '"name" = "b"', // 13
    'log.level = "info"' // 14
  ].join('\n')
  const lines = tomlKeyLines(text)
  const cases: Array<[string, number | undefined]> = [
    ['data_dir', 1], ['listen', 3], ['listen.http', 4], ['chain', 5], ['chain.mode', 6],
    ['chain.psk', 5], // not written: its table's header
    ['rate_profile', 10], ['rate_profile[0].name', 11], ['rate_profile[1]', 12], ['rate_profile[1].name', 13],
    ['rate_profile[1].limit_burst_requests', 12], ['rate_profile[1].log.level', 14],
    ['tls.extra_certs_file', undefined], ['pid_file', undefined]
  ]
  for (const [key, line] of cases) t.equal(lineOfKey(lines, key), line, key)
  t.equal(tomlKeyAtLine('[listen]\nhttp = "a"\nhttp = "b"\n', 3), 'listen.http', 'a repeated key is found on its own line')
  t.equal(tomlKeyAtLine('[listen]\nhttp = "a"\n', 2), 'listen.http')
  t.equal(tomlKeyAtLine('# nothing\n', 1), '')
})

t.test('JSON: the line of a path, or of its nearest written ancestor', async (t) => {
  const v1 = '{\n  "version": 1,\n  "routes": [\n    { "domain": "a.test",\n      "target": "x" },\n    {\n      "target": 1\n    }\n  ]\n}\n'
  t.same(Object.fromEntries(jsonPathLines(v1, ['$', '$.version', '$.routes[0].target', '$.routes[1].domain', '$.routes[1].target', '$.nope[3]'])), {
    $: 1, '$.version': 2, '$.routes[0].target': 5, '$.routes[1].domain': 6, '$.routes[1].target': 7, '$.nope[3]': 1
  })
  const legacy = '{\n "a.test": {\n  "Name": "a.test",\n  "DestinationPort": "80"\n },\n "b": { "Name": "b" }\n}'
  t.same(Object.fromEntries(jsonPathLines(legacy, ['$["a.test"].DestinationPort', '$["a.test"].VMName', '$.b.Name'])), {
    '$["a.test"].DestinationPort': 4, '$["a.test"].VMName': 2, '$.b.Name': 6
  })
  t.same(Object.fromEntries(jsonPathLines('{"s": "a \\" [ { , }", "n": [1, [2, 3]], "x": {}}', ['$.n[1][1]', '$.x.y'])), { '$.n[1][1]': 1, '$.x.y': 1 }, 'brackets inside strings are text')
})

t.test('JSON: where the text stops being JSON, as V8 says when it says', async (t) => {
  const cases: Array<[string, { line: number, column: number } | undefined]> = [
    ['{"a":1,}', { line: 1, column: 8 }],
    ['{"a":\n1 2}', { line: 2, column: 3 }],
    ['{\n  "routes": [,]\n}', { line: 2, column: 14 }],
    ['{"a": tru}', { line: 1, column: 7 }],
    ['{"a":1}}', { line: 1, column: 8 }],
    ['{"a":1', { line: 1, column: 7 }],
    ['{"a" 1}', { line: 1, column: 6 }],
    ['01', { line: 1, column: 2 }],
    ['', { line: 1, column: 1 }],
    ['{"a":[1,{"b":null,"c":[]},-1.5e3,"\\u00e9"]}', undefined],
    ['[]', undefined],
    [' {} \n', undefined]
  ]
  for (const [text, expected] of cases) {
    t.same(jsonSyntaxPosition(text), expected, JSON.stringify(text))
    let valid = true
    try { JSON.parse(text) } catch { valid = false }
    t.equal(valid, expected === undefined, `${JSON.stringify(text)}: agrees with JSON.parse`)
  }
})
