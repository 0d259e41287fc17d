// The shipped JSON Schema agrees with the validator on the shipped example and its key set.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../helpers/proxy-process.ts'
import { parseRouteFileText } from '../../proxy/route-table.ts'

t.test('route file schema', async (t) => {
  const schema = JSON.parse(readFileSync(join(ROOT, 'proxy/route-file.schema.json'), 'utf8')) as { required: string[], $defs: { route: { properties: Record<string, unknown> } } }
  t.same(schema.required, ['version', 'routes'])
  t.same(Object.keys(schema.$defs.route.properties).sort(), ['domain', 'rate_profile', 'redirect_code', 'redirect_to', 'redirect_to_https', 'target', 'vm'], 'the schema lists exactly the keys the validator accepts')
  const example = parseRouteFileText(readFileSync(join(ROOT, 'examples/routes.json'), 'utf8'))
  t.ok(example.ok, 'the example route file is valid')
})
