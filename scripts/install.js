#!/usr/bin/env node
// npm install hook: use a prebuilt binary from prebuilds/ when one loads, else build from source
// with cmake-js, else (no cmake) with plain node-gyp and binding.gyp (CPU backend only).
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const root = path.join(__dirname, '..')

function loads () {
  try {
    require('node-gyp-build')(root)
    return true
  } catch {
    return false
  }
}

function run (cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' })
  return r.status === 0
}

function has (cmd) {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore', shell: process.platform === 'win32' }).status === 0
}

if (process.env.PG25_BUILD_FROM_SOURCE !== '1' && loads()) process.exit(0)
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js')
if (has('cmake')) {
  if (run(process.execPath, [cmakeJs, 'compile', '--out', 'build'])) process.exit(0)
  console.error('@pg25/native: the cmake-js build failed; trying node-gyp (CPU backend only)')
}
let nodeGyp
try {
  nodeGyp = require.resolve('node-gyp/bin/node-gyp.js')
} catch {
  nodeGyp = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')
}
process.exit(run(process.execPath, [nodeGyp, 'rebuild']) ? 0 : 1)
