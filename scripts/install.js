#!/usr/bin/env node
// npm install hook: use the prebuilt binary in prebuilds/ when one loads, else build from source with
// cmake-js (CUDA too when nvcc is found), else with plain node-gyp and binding.gyp (CPU backend only).
// It says in one line what it did, and why when it builds. An installed package keeps only the .node file
// of a build (the objects are ~14 MB); a clone of the repository keeps them for incremental builds.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const target = `${process.platform}-${process.arch}`
// The cmake-js a build from source uses where none is installed (package.json's devDependency range).
const CMAKE_JS = require('../package.json').devDependencies?.['cmake-js'] ?? '^8.0.0'

function say (line) {
  console.log(`@pg25/native: ${line}`)
}

/** The addon's runtimeInfo() read in a child process (a failed load must not take this one down), or the error. */
function probe (file) {
  const r = spawnSync(process.execPath, ['-e', `process.stdout.write(JSON.stringify(require(${JSON.stringify(file)}).runtimeInfo()))`], { encoding: 'utf8' })
  if (r.status === 0) return { info: JSON.parse(r.stdout) }
  return { error: (r.stderr.trim().split('\n').find(l => /Error/.test(l)) || r.stderr.trim() || `exit ${r.status}`) }
}

/** What the prebuilt binary's build recorded (scripts/prebuild.js): the CUDA toolkit it was compiled with. */
function prebuildNotes (file) {
  try {
    return JSON.parse(fs.readFileSync(file.replace(/\.node$/, '.json'), 'utf8'))
  } catch {
    return {}
  }
}

/** The NVIDIA driver a statically linked CUDA runtime of this toolkit version needs. */
function driverFor (cudaVersion) {
  const major = Number(String(cudaVersion).split('.')[0])
  if (major >= 13) return 'R580'
  if (major === 12) return 'R525'
  return 'R520'
}

function cudaPhrase (info, cudaVersion) {
  if (!info.cudaCompiled) return 'without CUDA (CPU backend only)'
  return cudaVersion ? `with CUDA ${cudaVersion} (GPUs need NVIDIA driver ${driverFor(cudaVersion)} or newer)` : 'with CUDA'
}

function prebuilt () {
  const dir = path.join(root, 'prebuilds', target)
  let names = []
  try {
    names = fs.readdirSync(dir).filter(n => n.endsWith('.node'))
  } catch {}
  return names.length ? path.join(dir, names[0]) : null
}

/** This platform's binary package (@pg25/native-linux-x64, ...): its pg25.node, or null when it is not installed. */
function platformBinary () {
  try {
    return path.join(path.dirname(require.resolve(`@pg25/native-${target}/package.json`, { paths: [root] })), 'pg25.node')
  } catch {
    return null
  }
}

function has (cmd) {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0
}

/** Runs a build quietly; its output is shown only when it fails. */
function run (args) {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', maxBuffer: 256 << 20 })
  if (r.status !== 0) process.stderr.write((r.stdout || '') + (r.stderr || ''))
  return r.status === 0
}

/** Removes everything under build/ but build/Release/pg25.node (objects, CMake files, Makefiles). */
function keepOnlyAddon (buildDir) {
  for (const entry of fs.readdirSync(buildDir)) {
    if (entry === 'Release') continue
    fs.rmSync(path.join(buildDir, entry), { recursive: true, force: true })
  }
  const release = path.join(buildDir, 'Release')
  for (const entry of fs.readdirSync(release)) {
    if (entry !== 'pg25.node') fs.rmSync(path.join(release, entry), { recursive: true, force: true })
  }
}

/** npm's bin folder: the running npm's (npm sets npm_execpath for install steps), else the one beside node. */
function npmBin () {
  if (process.env.npm_execpath && /npm-cli\.js$/.test(process.env.npm_execpath)) return path.dirname(process.env.npm_execpath)
  const beside = process.platform === 'win32' ? ['node_modules'] : ['..', 'lib', 'node_modules']
  return path.join(path.dirname(process.execPath), ...beside, 'npm', 'bin')
}

function nodeGypCli () {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js')
  } catch {
    return path.join(npmBin(), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')
  }
}

/**
 * cmake-js, as node arguments: the one installed beside the package (a clone of the repository has it as a
 * devDependency), else fetched by npx for this build only, so that installs which load a prebuilt binary
 * never download it and its dependencies.
 */
function cmakeJs () {
  try {
    return [path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js')]
  } catch {
    return [path.join(npmBin(), 'npx-cli.js'), '--yes', '--package', `cmake-js@${CMAKE_JS}`, '--', 'cmake-js']
  }
}

function buildFromSource (why) {
  say(`building from source for ${target}: ${why}`)
  let how = 'cmake-js'
  let built = false
  if (has('cmake')) {
    built = run([...cmakeJs(), 'compile', '--out', 'build'])
    if (!built) console.error('@pg25/native: the cmake-js build failed (its output is above); trying node-gyp, CPU backend only')
  }
  if (!built) {
    how = has('cmake') ? 'node-gyp' : 'node-gyp (cmake was not found)'
    built = run([nodeGypCli(), 'rebuild'])
  }
  if (!built) {
    console.error('@pg25/native: the build from source failed (its output is above). It needs a C++17 compiler and CMake; see the README')
    return false
  }
  const file = path.join(root, 'build', 'Release', 'pg25.node')
  if (root.split(path.sep).includes('node_modules')) keepOnlyAddon(path.join(root, 'build'))
  const { info, error } = probe(file)
  if (!info) {
    console.error(`@pg25/native: the addon built from source does not load: ${error}`)
    return false
  }
  const cuda = info.cudaCompiled ?
    'with CUDA' :
    `without CUDA (CPU backend only: ${how.startsWith('node-gyp') ? 'node-gyp builds the CPU backend only' : 'nvcc was not found'})`
  say(`built from source with ${how} for ${target} ${cuda}`)
  return true
}

function main () {
  if (process.env.PG25_BUILD_FROM_SOURCE === '1') return buildFromSource('PG25_BUILD_FROM_SOURCE=1')
  const existing = path.join(root, 'build', 'Release', 'pg25.node')
  if (fs.existsSync(existing)) {
    const { info } = probe(existing)
    if (info) {
      say(`using the existing build ${path.relative(root, existing)} ${cudaPhrase(info)}`)
      return true
    }
  }
  const pkg = platformBinary()
  if (pkg) {
    const { info, error } = probe(pkg)
    if (info) {
      say(`prebuilt binary of @pg25/native-${target} loaded ${cudaPhrase(info, prebuildNotes(pkg).cuda)}`)
      return true
    }
    if (!prebuilt()) return buildFromSource(`the binary of @pg25/native-${target} does not load here (${error})`)
  }
  const file = prebuilt()
  if (!file) return buildFromSource(`this package has no prebuilt binary for ${target}`)
  const { info, error } = probe(file)
  if (!info) return buildFromSource(`the prebuilt binary ${path.relative(root, file)} does not load here (${error})`)
  say(`prebuilt binary loaded for ${target} ${cudaPhrase(info, prebuildNotes(file).cuda)}`)
  return true
}

process.exitCode = main() ? 0 : 1
