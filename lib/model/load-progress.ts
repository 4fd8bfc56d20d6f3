// Load progress in bytes. The total is known before a weight is read: each component's graph says
// which tensors it takes (the addon's dry-run manifest) and the safetensors headers say how many
// bytes each takes in its file. The addon then reports the running count after every tensor, counted
// the same way, so loadedBytes grows steadily and ends exactly at totalBytes.
import { native } from '../errors'
import type { ComponentSource } from './model-dir'
import { componentManifest, loadNative, type SafetensorsEntry } from '../native'
import type { LoadProgress } from '../options'

const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1)

/** The bytes `src`'s graph reads from its files (tensors the graph does not use, such as the VAE encoder's, are not counted). */
async function componentBytes (src: ComponentSource, headers: (file: string) => Promise<SafetensorsEntry[]>): Promise<number> {
  const entries = new Map<string, SafetensorsEntry>()
  for (const f of src.files) for (const e of await headers(f.path)) entries.set(e.name, e)
  const source = new Map((src.aliases ?? []).map(a => [a.name, a.source]))
  const kind = src.name === 'text_encoder_2' ? 'text_encoder' : src.name as 'text_encoder' | 'unet' | 'vae'
  let total = 0
  for (const d of componentManifest({ kind, className: src.className, configPath: src.configPath, configText: src.configText })) {
    const e = entries.get(source.get(d.name) ?? d.name)
    // A missing tensor is the load's own error to report; the byte size per element follows the stored dtype.
    if (e !== undefined && numel(e.shape) > 0) total += numel(d.shape) * (e.end - e.begin) / numel(e.shape)
  }
  return total
}

/**
 * Reports one load's progress to `emit`, component after component: at each component's start and
 * end, and in between each time another hundredth of the total is read (not once per tensor: the tiny
 * model alone has hundreds).
 */
export class LoadMeter {
  private done = 0
  private last = -1

  private constructor (
    private readonly sizes: Map<string, number>,
    private readonly totalBytes: number,
    private readonly emit: (p: LoadProgress) => void
  ) {}

  static async create (sources: ComponentSource[], emit: (p: LoadProgress) => void): Promise<LoadMeter> {
    const cache = new Map<string, Promise<SafetensorsEntry[]>>()
    const headers = async (file: string): Promise<SafetensorsEntry[]> => {
      if (!cache.has(file)) cache.set(file, native(async () => await loadNative().inspectSafetensors(file)))
      return await cache.get(file)!
    }
    const sizes = new Map<string, number>()
    for (const s of sources) sizes.set(s.name, await componentBytes(s, headers))
    return new LoadMeter(sizes, [...sizes.values()].reduce((a, b) => a + b, 0), emit)
  }

  private report (component: string, loadedBytes: number): void {
    this.last = loadedBytes
    this.emit({ phase: 'load', component, loadedBytes, totalBytes: this.totalBytes })
  }

  /**
   * Runs one component's load (`load` passes `onBytes` to the addon), reporting its start, each
   * tensor's bytes and its end. A callback that throws while the addon reports fails the load once
   * the component is in, as it would from the start or end report.
   */
  async run<T> (component: string, load: (onBytes: (bytes: number) => void) => Promise<T>): Promise<T> {
    const base = this.done
    const size = this.sizes.get(component) ?? 0
    this.report(component, base)
    let finished = false
    let failure: { error: unknown } | undefined
    const result = await load(bytes => {
      // Reports can arrive after the load's promise settled; by then the end report has been made.
      const at = base + Math.min(bytes, size)
      if (finished || failure !== undefined || at <= this.last || at - this.last < this.totalBytes / 100) return
      try {
        this.report(component, at)
      } catch (error) {
        failure = { error }
      }
    })
    finished = true
    if (failure !== undefined) throw failure.error
    this.done = base + size
    if (this.done > this.last) this.report(component, this.done)
    return result
  }
}
