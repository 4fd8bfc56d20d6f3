#!/usr/bin/env node
// prebuildify runs node-gyp; this stands in for it (PREBUILD_NODE_GYP) so that prebuilds/ holds the
// cmake-js build, CUDA sources included. It accepts node-gyp's arguments and honours --debug.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const root = path.join(__dirname, '..')
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js')
const args = [cmakeJs, 'rebuild', '--out', 'build']
if (process.argv.includes('--debug')) args.push('--debug')
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' })
process.exit(r.status ?? 1)
