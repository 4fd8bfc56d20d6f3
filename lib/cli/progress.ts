// Progress on stderr. On a terminal: a bar redrawn in place, at most ten times a second. Elsewhere
// (a log, CI): one line each time another tenth is done, so a log shows progress as it goes without a
// line per tensor or step.
import type { LoadProgress, StepInfo } from '../options'

export interface Out { write: (s: string) => unknown, isTTY?: boolean }

const WIDTH = 24
const bar = (frac: number): string => {
  const filled = Math.max(0, Math.min(WIDTH, Math.round(frac * WIDTH)))
  return `[${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}]`
}

export function fmtSize (bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(2)} GiB`
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`
  return `${(bytes / 2 ** 10).toFixed(0)} KiB`
}

/** Seconds as m:ss, or h:mm:ss from an hour. */
export function fmtDuration (seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  const two = (n: number): string => String(n).padStart(2, '0')
  const h = Math.floor(s / 3600)
  return h > 0 ? `${h}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}` : `${Math.floor(s / 60)}:${two(s % 60)}`
}

/** One bar: `line(bar)` renders it, with the bar on a terminal and without it (null) in a log. */
class Meter {
  private tenth = 0
  private drawn = -Infinity
  private open = false

  constructor (private readonly out: Out, private readonly now: () => number) {}

  update (frac: number, line: (bar: string | null) => string): void {
    if (this.out.isTTY === true) {
      const t = this.now()
      if (frac < 1 && t - this.drawn < 100) return
      this.drawn = t
      this.out.write(`\r${line(bar(frac))}\x1b[K`)
      this.open = true
    } else {
      const tenth = Math.floor(Math.min(1, frac) * 10)
      if (tenth <= this.tenth) return
      this.tenth = tenth
      this.out.write(`${line(null)}\n`)
    }
  }

  end (): void {
    if (this.open) this.out.write('\n')
    this.open = false
  }
}

/** Bytes per second as `12.3 MiB/s`. */
const fmtRate = (bps: number): string => `${fmtSize(bps)}/s`

/**
 * Renders onProgress events: a bar per phase (downloading, then loading), in bytes; downloads add
 * their speed and the time left, measured from the phase's first event (bytes resumed from an earlier
 * run are not speed), and the file in transfer with its own bytes.
 */
export function loadReporter (out: Out, now: () => number = Date.now): { update: (p: LoadProgress) => void, end: () => void } {
  let phase: string | undefined
  let meter = new Meter(out, now)
  let from = { t: 0, bytes: 0 }
  return {
    update (p) {
      const t = now()
      if (p.phase !== phase) {
        meter.end()
        meter = new Meter(out, now)
        phase = p.phase
        from = { t, bytes: p.loadedBytes }
      }
      const label = p.phase === 'download' ? 'downloading' : 'loading'
      const frac = p.totalBytes > 0 ? p.loadedBytes / p.totalBytes : 1
      const rate = p.phase === 'download' && t > from.t ? (p.loadedBytes - from.bytes) / ((t - from.t) / 1000) : 0
      const speed = rate > 0 ? `${fmtRate(rate)}, ETA ${fmtDuration((p.totalBytes - p.loadedBytes) / rate)}` : ''
      const file = p.file !== undefined && p.fileTotalBytes !== undefined ?
        `${p.file} (${fmtSize(p.fileLoadedBytes ?? 0)} of ${fmtSize(p.fileTotalBytes)})` : undefined
      const what = file ?? p.component ?? ''
      meter.update(frac, b => b === null ?
        `${label}: ${Math.floor(frac * 100)}% (${fmtSize(p.loadedBytes)} of ${fmtSize(p.totalBytes)}${speed && `, ${speed}`})` :
        `${label.padEnd(11)} ${b} ${fmtSize(p.loadedBytes)} / ${fmtSize(p.totalBytes)}${speed &&
        `  ${speed.replace(', ', '  ')}`}  ${what}`)
    },
    end: () => meter.end()
  }
}

/**
 * Renders onStep events with the rate and the time left. The rate is measured from the first step's
 * end (what comes before it, text encoding and image encoding, is not a step), or from `start` until then.
 */
export function stepReporter (out: Out, now: () => number = Date.now): { update: (s: StepInfo) => void, end: () => void } {
  const start = now()
  let first: number | undefined
  const meter = new Meter(out, now)
  return {
    update ({ step, steps }) {
      const t = now()
      if (step === 1 || first === undefined) first = t
      const rate = step > 1 && t > first ? (step - 1) / ((t - first) / 1000) : t > start ? step / ((t - start) / 1000) : 0
      const speed = rate === 0 ? '' : rate >= 1 ? `${rate.toFixed(2)} it/s` : `${(1 / rate).toFixed(2)} s/it`
      const eta = rate === 0 ? '' : `ETA ${fmtDuration((steps - step) / rate)}`
      meter.update(step / steps, b => b === null ?
        `steps: ${step}/${steps} (${Math.floor((step / steps) * 100)}%)${speed && `, ${speed}, ${eta}`}` :
        `${'steps'.padEnd(11)} ${b} ${step}/${steps}${speed && `  ${speed}  ${eta}`}`)
    },
    end: () => meter.end()
  }
}
