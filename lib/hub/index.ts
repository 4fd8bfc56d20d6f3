// '@pg25/native/hub': fetching a model or one file from the Hugging Face Hub into its cache, without
// loading it (the pipeline resolves Hub ids itself).
export { downloadModel } from './resolve'
export type { DownloadOptions, DownloadProgress } from './resolve'
export { downloadFile } from './repo-file'
export type { DownloadFileOptions } from './repo-file'
