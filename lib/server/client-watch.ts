// Telling a client that left from one that only finished sending. A client that shuts its write
// side after the request (a half-close) still reads the answer; one that closed its socket does not.
// Both look alike (a FIN) until something is written, so after a FIN the server writes an interim
// "102 Processing" now and then: to a closed socket that write fails and closes ours, which cancels.
import type http from 'node:http'

const PROBE_MS = 1000

/** Calls `gone` once when the client's connection closes before `res` is finished. Returns a stop function. */
export function watchClient (req: http.IncomingMessage, res: http.ServerResponse, gone: () => void): () => void {
  let probe: NodeJS.Timeout | undefined
  const onClose = (): void => { if (!res.writableFinished) gone() }
  const onEnd = (): void => {
    if (probe !== undefined || req.httpVersionMinor < 1) return
    probe = setInterval(() => { if (!res.headersSent && !res.destroyed) res.writeProcessing() }, PROBE_MS)
  }
  res.on('close', onClose)
  req.socket.on('end', onEnd)
  return () => {
    clearInterval(probe)
    res.off('close', onClose)
    req.socket.off('end', onEnd)
  }
}
