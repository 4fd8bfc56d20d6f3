// Run by scripts/wine-job.sh with Linux's node on the Linux build and with Windows' node (under Wine) on
// the MinGW build: the golden pipeline cases' 8-bit images and latents, and one picture of the built-in
// demo model (trained weights, both CLIP activations), as SHA-256 digests, written as JSON to the file
// named by the first argument. The job compares the two files: the same bytes on both.
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { Pipeline, ensureDemoModel } from '../../lib'
import { TINY, goldenCases } from '../support/helpers'

const digest = (a: ArrayBufferView): string => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex')

async function main (): Promise<void> {
  const pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  const out: Record<string, { image: string, latents: string }> = {}
  try {
    for (const c of goldenCases().pipeline as any[]) {
      const opts = {
        negativePrompt: c.negative ?? undefined, steps: c.steps, guidanceScale: c.guidance, width: c.w, height: c.h, seed: c.seed,
        promptStyle: 'plain' as const
      }
      const lat = await pipe.generate(c.prompt, { ...opts, outputType: 'latent' })
      const r = await pipe.generate(c.prompt, opts)
      out[c.file] = { image: digest(r.images[0].data), latents: digest(lat.latents!) }
    }
  } finally {
    await pipe.dispose()
  }
  const demo = await Pipeline.fromPretrained(await ensureDemoModel(), { device: 'cpu' })
  try {
    const r = await demo.generate('a yellow star in the top left corner on a blue background', { steps: 12, seed: 7 })
    out.demo = { image: digest(r.images[0].data), latents: '' }
  } finally {
    await demo.dispose()
  }
  await fs.writeFile(process.argv[2], JSON.stringify(out, null, 1) + '\n')
}

main().catch(err => { console.error(err); process.exit(1) })
