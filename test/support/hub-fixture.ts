// What the Hub tests share: a mock Hub serving tiny-pg25, and a fresh Hugging Face home per test.
// The environment is process-wide, so the Hub tests run serially; HF_HOME always points at a temp
// folder, so no test reads or writes the real ~/.cache.
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { TestFn } from 'ava'
import { serializeSafetensors, type TensorToWrite } from '../../lib/io/safetensors-writer'
import { TINY } from './helpers'
import { MockHub, type MockRepoSpec } from './mock-hub'

export const ID = 'test-org/tiny-pg25'
export const GATED = 'test-org/gated-pg25'
export const GATED_TOKEN = 'hf_mock_secret'
/** the weight files of tiny-pg25's fp16 variant, as repo paths */
export const FP16_WEIGHTS = ['text_encoder/model.fp16.safetensors', 'text_encoder_2/model.fp16.safetensors', 'unet/diffusion_pytorch_model.fp16.safetensors', 'vae/diffusion_pytorch_model.fp16.safetensors']
/** IEEE half bits -> number. */
function fromHalf (h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0) return sign * mant * 2 ** -24
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN
  return sign * (1 + mant / 1024) * 2 ** (exp - 15)
}

/** The full-precision file the real repo ships beside each fp16 one: the same values, stored as F32. */
export function toFloat32File (fp16: Buffer): Buffer {
  const n = Number(fp16.readBigUInt64LE(0))
  const header = JSON.parse(fp16.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string, shape: number[], data_offsets: [number, number] }>
  const tensors: TensorToWrite[] = []
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue
    const data = new Float32Array((e.data_offsets[1] - e.data_offsets[0]) / 2)
    for (let i = 0; i < data.length; i++) data[i] = fromHalf(fp16.readUInt16LE(8 + n + e.data_offsets[0] + 2 * i))
    tensors.push({ name, dtype: 'F32', shape: e.shape, data })
  }
  return serializeSafetensors(tensors)
}

/** files the mock repo holds that the pipeline never needs with variant fp16 */
export const UNNEEDED = ['README.md', 'unet/diffusion_pytorch_model.safetensors', 'text_encoder/model.bin']

const HF_VARS = ['HF_HOME', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'XDG_CACHE_HOME', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN',
  'HF_TOKEN_PATH', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_ENDPOINT', 'HF_HUB_ETAG_TIMEOUT', 'HF_HUB_DOWNLOAD_TIMEOUT',
  'PG25_HUB_FILE_ATTEMPTS', 'PG25_HUB_FILE_DEADLINE']

export interface HubTest { hub: MockHub, home: string, cache: string }

/** Starts the mock Hub for a test file and gives each test a fresh HF_HOME with HF_ENDPOINT set; `more` repos beside tiny-pg25's. */
export function useMockHub (test: TestFn, more: MockRepoSpec[] = []): () => HubTest {
  let hub: MockHub
  let home = ''
  test.before(async () => {
    hub = await MockHub.start([
      // A full-precision UNet beside the fp16 one (as the real repo has; fetched only without a variant) and files the
      // pipeline never needs.
      { id: ID, dir: TINY, branches: ['v2.5'], extra: { 'README.md': Buffer.from('# tiny-pg25\n'), 'unet/diffusion_pytorch_model.safetensors': toFloat32File(await fs.readFile(path.join(TINY, 'unet/diffusion_pytorch_model.fp16.safetensors'))), 'text_encoder/model.bin': Buffer.alloc(1000, 7) } },
      { id: GATED, dir: TINY, token: GATED_TOKEN },
      ...more
    ])
  })
  test.beforeEach(async () => {
    for (const v of HF_VARS) delete process.env[v]
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-hub-'))
    process.env.HF_HOME = home
    process.env.HF_ENDPOINT = hub.url
    hub.requests.length = 0
    hub.knobs = {}
  })
  test.afterEach.always(async () => { await fs.rm(home, { recursive: true, force: true }) })
  test.after.always(async () => {
    await hub?.close()
    for (const v of HF_VARS) delete process.env[v]
  })
  return () => ({ hub, home, cache: path.join(home, 'hub') })
}

/** The cache folder of `id` under `cache`. */
export const repoDir = (cache: string, id = ID): string => path.join(cache, `models--${id.replace('/', '--')}`)
