// Our cuDNN declarations (native/cuda/cudnn.h: we open libcudnn.so.9 at run time with no NVIDIA header
// at build time) checked against the real cudnn.h wherever it is found: test/emulation/cudnn-header-check.cc
// static_asserts every enum value and function signature we use, compiled with the host compiler.
// Where the headers are: $PG25_CUDNN_INCLUDE, the nvidia-cudnn wheel's include folder (unpacked under
// /tmp/cudnn-wheel, or installed in a site-packages), the system's, else the wheel fetched from pip's index; the
// CUDA runtime headers it includes come from $CUDA_PATH, /usr/local/cuda*/include or the nvidia-cuda-runtime wheel.
// Skipped, saying why, without them.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const ROOT = path.join(__dirname, '..', '..', '..')
const SOURCE = path.join(ROOT, 'test', 'emulation', 'cudnn-header-check.cc')

function sitePackages (): string[] {
  const r = spawnSync('python3', ['-c', 'import site, sys; print("\\n".join(site.getsitepackages() + [site.getusersitepackages()]))'], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim().split('\n').filter(Boolean) : []
}
const sites = sitePackages()
const cudaRoots = (): string[] => {
  const local = fs.existsSync('/usr/local') ? fs.readdirSync('/usr/local').filter(n => /^cuda(-[\d.]+)?$/.test(n)).map(n => path.join('/usr/local', n, 'include')) : []
  return [process.env.CUDA_PATH ? path.join(process.env.CUDA_PATH, 'include') : '', ...local, ...sites.map(s => path.join(s, 'nvidia', 'cuda_runtime', 'include')), '/usr/include']
}
function find (dirs: string[], files: string[]): string | undefined {
  return dirs.find(d => d !== '' && files.every(f => fs.existsSync(path.join(d, f))))
}

// Where no header is installed, the wheel from pip's index (this project's machines carry it in a local
// one): downloaded once, and only its include folder unpacked, under the temp folder.
function fromWheel (): string | undefined {
  const dir = path.join(os.tmpdir(), 'pg25-cudnn-wheel')
  const include = path.join(dir, 'unpacked', 'nvidia', 'cudnn', 'include')
  if (fs.existsSync(path.join(include, 'cudnn_graph.h'))) return include
  const dl = spawnSync('python3', ['-m', 'pip', 'download', '--no-deps', '--quiet', 'nvidia-cudnn-cu13', '-d', dir], { encoding: 'utf8', timeout: 300_000 })
  const wheel = dl.status === 0 ? fs.readdirSync(dir).find(f => /^nvidia_cudnn_cu13-9\..*\.whl$/.test(f)) : undefined
  if (wheel === undefined) return undefined
  const unzip = 'import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nfor n in z.namelist():\n    if n.startswith("nvidia/cudnn/include/"): z.extract(n, sys.argv[2])'
  spawnSync('python3', ['-c', unzip, path.join(dir, wheel), path.join(dir, 'unpacked')], { timeout: 120_000 })
  fs.rmSync(path.join(dir, wheel), { force: true })
  return fs.existsSync(path.join(include, 'cudnn_graph.h')) ? include : undefined
}

const cudnnDir = find([process.env.PG25_CUDNN_INCLUDE ?? '', '/tmp/cudnn-wheel/unpacked/nvidia/cudnn/include',
  ...sites.map(s => path.join(s, 'nvidia', 'cudnn', 'include')), '/usr/include', '/usr/include/x86_64-linux-gnu', '/usr/local/cuda/include'], ['cudnn.h', 'cudnn_graph.h']) ??
  fromWheel()
const cudaDir = find(cudaRoots(), ['cuda_runtime.h', 'cuda_runtime_api.h', 'library_types.h'])
const compiler = ['c++', 'g++', 'clang++'].find(c => spawnSync(c, ['--version']).status === 0)
const missing = cudnnDir === undefined ?
  'cudnn.h (cuDNN 9) not found, and pip could not fetch nvidia-cudnn-cu13: set PG25_CUDNN_INCLUDE' :
  cudaDir === undefined ? 'the CUDA runtime headers (cuda_runtime_api.h) not found: set CUDA_PATH' : compiler === undefined ? 'no C++ compiler' : ''

function compile (...defines: string[]): { status: number | null, stderr: string } {
  const r = spawnSync(compiler!, ['-std=c++17', '-fsyntax-only', ...defines, `-I${cudnnDir!}`, `-I${cudaDir!}`, SOURCE], { encoding: 'utf8', timeout: 120_000 })
  return { status: r.status, stderr: r.stderr }
}

if (missing !== '') {
  test.skip(`our cuDNN declarations match the real cudnn.h (skipped: ${missing})`, () => {})
} else {
  test('our cuDNN declarations match the real cudnn.h: every enum value and signature we use', t => {
    t.log(`cudnn.h from ${cudnnDir!}, CUDA headers from ${cudaDir!}`)
    const r = compile()
    t.is(r.status, 0, r.stderr.split('\n').filter(l => /error/.test(l)).slice(0, 10).join('\n'))
  })

  test('the check catches a mismatch (control: a wrong signature and a wrong attribute value)', t => {
    const r = compile('-DPG25_EXPECT_MISMATCH')
    t.not(r.status, 0)
    t.regex(r.stderr, /cudnnBackendSetAttribute's signature differs from our dnn::GetAttributeFn/)
    t.regex(r.stderr, /dnn::kAttrTensorStrides is not CUDNN_ATTR_TENSOR_DIMENSIONS/)
  })
}
