// 'plain' prompts (diffusers' reading): one 77-token row per text and encoder, kept on the device.
import type { TextEncoderModel } from '../model/components'
import type { NativeTensor } from '../native'
import { release, type Runtime } from '../runtime'

/** 'plain': diffusers' reading, one 77-token row per text and encoder. */
export interface PlainPlan { style: 'plain', ids: [number[][], number[][]], tokens: 77 }

/** The tensors joined along the batch axis, in order (a new tensor; the inputs are left alone). */
export function joinBatch (rt: Runtime, ts: NativeTensor[]): NativeTensor {
  let acc = rt.call(() => rt.engine.slice0(ts[0], 0, ts[0].shape[0]))
  for (const t of ts.slice(1)) {
    const next = rt.call(() => rt.engine.concat(acc, t, 0))
    acc.dispose()
    acc = next
  }
  return acc
}

/**
 * Embeddings [B, 77, 2048] and pooled [B, 1280] for B = count (no guidance) or 2 x count laid out
 * [negative x count, prompt x count]; with guidance and one row per encoder the negative half is zeros.
 */
export async function encodePlain (rt: Runtime, encoders: [TextEncoderModel, TextEncoderModel], plan: PlainPlan, cfg: boolean,
  count: number, signal: AbortSignal): Promise<{ embeds: NativeTensor, pooled: NativeTensor }> {
  const zeroNegative = cfg && plan.ids[0].length === 1
  const [a, b] = await Promise.all([encoders[0].encode(plan.ids[0], signal), encoders[1].encode(plan.ids[1], signal)])
  const parts: NativeTensor[] = [a.penultimate, b.penultimate, b.pooled!]
  try {
    const embeds = rt.call(() => rt.engine.concat(a.penultimate, b.penultimate, -1))
    parts.push(embeds)
    const zeros = (t: NativeTensor): NativeTensor => rt.fromHost(new Float32Array(t.shape.reduce((x, y) => x * y, 1)), t.shape)
    // Each of [negative?, prompt] repeated count times, then joined on the batch axis.
    const layout = (t: NativeTensor): NativeTensor => {
      const halves: NativeTensor[] = []
      if (zeroNegative) halves.push(zeros(t))
      const rows = t.shape[0]
      for (let r = 0; r < rows; r++) halves.push(rt.call(() => rt.engine.slice0(t, r, 1)))
      parts.push(...halves)
      return joinBatch(rt, halves.flatMap(h => Array<NativeTensor>(count).fill(h)))
    }
    return { embeds: layout(embeds), pooled: layout(b.pooled!) }
  } finally {
    release(...parts)
  }
}
