#!/usr/bin/env node
// `npm run prebuilds` (and `prepack`, so every `npm pack` / `npm publish` carries it): compiles the addon with
// the CUDA backend into build-prebuild/ (build/, which the tests load, is left alone), strips it and writes
// prebuilds/<platform>-<arch>/@pg25+native.glibc.node for node-gyp-build, with a .json beside it naming the
// CUDA toolkit. The build machine needs nvcc (users do not: cudart is linked statically); without it this
// fails rather than ship a CPU-only binary. CUDACXX picks the toolkit: release builds use CUDA 12.8, which
// reaches every driver since R525 and still has sm_90a (README, GPU requirements).
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const out = path.join(root, 'build-prebuild')
const target = `${process.platform}-${process.arch}`

function fail (msg) {
  console.error(`prebuilds: ${msg}`)
  process.exit(1)
}

const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js')
const build = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', out, '--CDPG25_CUDA=ON', '--CDPG25_CUDA_EMULATION=OFF', '--CDPG25_SANITIZE=OFF'], { cwd: root, stdio: 'inherit' })
if (build.status !== 0) fail('the cmake-js build failed (output above)')

const built = path.join(out, 'Release', 'pg25.node')
const probe = spawnSync(process.execPath, ['-e', `process.stdout.write(JSON.stringify(require(${JSON.stringify(built)}).runtimeInfo()))`], { encoding: 'utf8' })
if (probe.status !== 0) fail(`the built addon does not load: ${probe.stderr}`)
if (!JSON.parse(probe.stdout).cudaCompiled) {
  fail('the addon was built without the CUDA backend: no CUDA compiler was found. A package must carry the CUDA backend; ' +
    'install the CUDA toolkit (12.8 for releases) and put nvcc on PATH or set CUDACXX')
}

// The toolkit version CMake found (CMakeFiles/<cmake version>/CMakeCUDACompiler.cmake).
let cuda
for (const dir of fs.readdirSync(path.join(out, 'CMakeFiles'))) {
  const f = path.join(out, 'CMakeFiles', dir, 'CMakeCUDACompiler.cmake')
  if (fs.existsSync(f)) cuda = /set\(CMAKE_CUDA_COMPILER_VERSION "([\d.]+)"\)/.exec(fs.readFileSync(f, 'utf8'))?.[1]
}
if (!cuda) fail(`could not read the CUDA compiler version from ${out}/CMakeFiles`)
if (!cuda.startsWith('12.8.')) {
  console.warn(`prebuilds: built with CUDA ${cuda}; release prebuilds are meant to use CUDA 12.8 (drivers R525+), ` +
    'set CUDACXX=/usr/local/cuda-12.8/bin/nvcc where it is installed')
}

const dir = path.join(root, 'prebuilds', target)
fs.rmSync(dir, { recursive: true, force: true })
fs.mkdirSync(dir, { recursive: true })
const dest = path.join(dir, '@pg25+native.glibc.node')
fs.copyFileSync(built, dest)
// Symbols are not needed to load or run it; where strip is missing, ship it as is.
const strip = spawnSync('strip', ['--strip-all', dest], { stdio: 'inherit' })
if (strip.error) console.warn('prebuilds: strip was not found; the binary keeps its symbols')
else if (strip.status !== 0) fail(`strip ${dest} failed`)
fs.writeFileSync(path.join(dir, '@pg25+native.glibc.json'), JSON.stringify({ cuda }) + '\n')
console.log(`prebuilds: wrote ${path.relative(root, dest)} (CUDA ${cuda})`)
