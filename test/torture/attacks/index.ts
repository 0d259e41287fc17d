/**
 * @module test/torture/attacks
 * Every attack of `npm run torture`, in the order they run.
 */
import type { TortureAttack } from '../types.ts'
import { slowBody, slowloris, slowRead } from './slowhttptest.ts'
import { pipelineVanish } from './pipeline-vanish.ts'
import { pingFlood, rapidReset, settingsFlood } from './h2-floods.ts'
import { routeFuzz } from './route-fuzz.ts'
import { websocketChurn } from './websocket-churn.ts'
import { manyIps } from './many-ips.ts'
import { soak } from './soak.ts'

export const ATTACKS: readonly TortureAttack[] = [
  slowRead,
  slowloris,
  slowBody,
  pipelineVanish,
  rapidReset,
  pingFlood,
  settingsFlood,
  routeFuzz,
  websocketChurn,
  manyIps,
  soak
]
