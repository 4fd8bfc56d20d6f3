// '@pg25/native/fleet': workers that take jobs from a Redis queue, and the queue's client. bullmq and
// ioredis are optional peer dependencies: checked first, so a missing one is named, not a stack trace.
import './peers'

export { startWorker } from './worker'
export type { FleetWorker, WorkerOptions } from './worker'
export { GenerateQueue } from './queue'
export type { GenerateQueueOptions, KeepJobs } from './queue'
export type { WorkerInfo } from './registry'
export type { FleetJobData, FleetProgress, FleetResult, FleetReturn } from './job'
