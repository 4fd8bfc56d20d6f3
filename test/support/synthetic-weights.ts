// Seed-made weights for a component's graph, for tests that need a model file to break on purpose.
import { componentManifest, type ComponentSpec } from '../../lib/native'
import type { TensorToWrite } from '../../lib/io/safetensors-writer'
import { TorchGenerator } from '../../lib/random/torch-generator'

/** The tensors the config asks for, with norms at 1, biases at 0, embeddings ~N(0, 0.02) and other weights ~N(0, 1/fan_in). */
export function syntheticWeights (spec: ComponentSpec, seed: number): TensorToWrite[] {
  const gen = new TorchGenerator(seed)
  return componentManifest(spec).map(p => {
    const n = p.shape.reduce((a, b) => a * b, 1)
    const leaf = p.name.split('.').slice(-2).join('.')
    let data: Float32Array
    if (/norm|layer_norm|ln_/.test(leaf) && p.shape.length === 1) {
      data = new Float32Array(n).fill(p.name.endsWith('.weight') ? 1 : 0)
    } else if (p.name.endsWith('.bias')) {
      data = new Float32Array(n)
    } else {
      const fanIn = p.shape.length > 1 ? n / p.shape[0] : n
      const scale = /embedding\.weight$/.test(p.name) ? 0.02 : 1 / Math.sqrt(fanIn)
      data = gen.randn([n]).map(v => v * scale)
    }
    return { name: p.name, dtype: 'F32', shape: p.shape, data }
  })
}
