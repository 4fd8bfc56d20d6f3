import type { GenerateOptions, Plan } from '../options'
import type { SchedulerName } from '../scheduler'

const SAMPLER_LABEL: Record<SchedulerName, string> = { 'dpmpp-2m': 'DPM++ 2M Karras', euler: 'Euler Karras' }

/** What made image `index`, in A1111's "parameters" text (the PNG's tEXt chunk that UIs read back). */
export function parametersText (prompt: string, o: GenerateOptions, plan: Plan, run: { scheduler: SchedulerName, width: number,
  height: number, index: number, modelName: string | undefined }): string {
  const lines = [prompt]
  if (o.negativePrompt) lines.push(`Negative prompt: ${o.negativePrompt}`)
  const fields = [`Steps: ${plan.steps}`, `Sampler: ${SAMPLER_LABEL[run.scheduler]}`, `CFG scale: ${plan.guidance}`, `Seed: ${plan.seed}`,
    `Size: ${run.width}x${run.height}`]
  if (run.modelName !== undefined) fields.push(`Model: ${run.modelName}`)
  if (o.image !== undefined) fields.push(`Denoising strength: ${plan.strength}`)
  if (plan.count > 1) fields.push(`Batch size: ${plan.count}`, `Batch pos: ${run.index}`)
  fields.push('Version: @pg25/native')
  lines.push(fields.join(', '))
  return lines.join('\n')
}
