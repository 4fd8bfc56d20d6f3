import type { RGBImage } from '../image'
import type { LatentStats } from '../model/components'
import type { NativeTensor } from '../native'
import type { Runtime } from '../runtime'

// SDXL latent-to-RGB factors for previews (as used by common UIs), applied to VAE latents x 0.13025.
const SDXL_RGB = [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]]
const SDXL_RGB_BIAS = [0.1084, -0.0175, -0.0011]
const SDXL_SCALE = 0.13025

export interface PreviewMatrix { m: Float32Array, bias: Float32Array }

/**
 * The matrix taking this model's UNet latents to preview RGB, or null where the factors do not apply:
 * they are the SDXL VAE's, for 4 latent channels.
 */
export function previewMatrix (channels: number, stats: LatentStats): PreviewMatrix | null {
  if (channels !== SDXL_RGB.length) return null
  const { scalingFactor, mean, std } = stats
  const m = new Float32Array(3 * channels)
  const bias = Float32Array.from(SDXL_RGB_BIAS)
  for (let c = 0; c < 3; c++) {
    for (let k = 0; k < channels; k++) {
      const f = SDXL_RGB[k][c] * SDXL_SCALE
      m[c * channels + k] = f * (std ? std[k] : 1) / scalingFactor
      if (mean) bias[c] += f * mean[k]
    }
  }
  return { m, bias }
}

/** One small RGB image (H/8 x W/8) per batch item, of the denoised estimate `x0`. */
export function previewImages (rt: Runtime, x0: NativeTensor, preview: PreviewMatrix, width: number, height: number,
  count: number): RGBImage[] {
  const bytes = rt.call(() => rt.engine.latentPreview(x0, preview.m, preview.bias))
  const pw = width / 8
  const ph = height / 8
  const per = pw * ph * 3
  return Array.from({ length: count }, (_, k) => ({ width: pw, height: ph, data: bytes.subarray(k * per, (k + 1) * per) }))
}
