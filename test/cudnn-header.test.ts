// Our cuDNN declarations (native/cuda/cudnn.h: we open libcudnn.so.9 at run time with no NVIDIA header
// at build time) checked against the real cudnn.h wherever it is found: test/cudnn-header-check.cc
// static_asserts every enum value and function signature we use, compiled with the host compiler.
// Where the headers are: $PG25_CUDNN_INCLUDE, the nvidia-cudnn wheel's include folder (unpacked under
// /tmp/cudnn-wheel by `pip download --no-deps nvidia-cudnn-cu13 -d /tmp/cudnn-wheel` and unzip, or
// installed in a site-packages), or the system's; the CUDA runtime headers it includes come from
// $CUDA_PATH, /usr/local/cuda*/include or the nvidia-cuda-runtime wheel. Skipped, saying why, without them.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

const ROOT = path.join(__dirname, '..', '..')
const SOURCE = path.join(ROOT, 'test', 'cudnn-header-check.cc')

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

const cudnnDir = find([process.env.PG25_CUDNN_INCLUDE ?? '', '/tmp/cudnn-wheel/unpacked/nvidia/cudnn/include',
  ...sites.map(s => path.join(s, 'nvidia', 'cudnn', 'include')), '/usr/include', '/usr/include/x86_64-linux-gnu', '/usr/local/cuda/include'], ['cudnn.h', 'cudnn_graph.h'])
const cudaDir = find(cudaRoots(), ['cuda_runtime.h', 'cuda_runtime_api.h', 'library_types.h'])
const compiler = ['c++', 'g++', 'clang++'].find(c => spawnSync(c, ['--version']).status === 0)
const missing = cudnnDir === undefined
  ? 'cudnn.h (cuDNN 9) not found: set PG25_CUDNN_INCLUDE, or unpack nvidia-cudnn-cu13 under /tmp/cudnn-wheel/unpacked'
  : cudaDir === undefined ? 'the CUDA runtime headers (cuda_runtime_api.h) not found: set CUDA_PATH' : compiler === undefined ? 'no C++ compiler' : ''

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
