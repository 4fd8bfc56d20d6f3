#!/usr/bin/env node
// Packs one per-platform binary package (packages/native-<platform>-<arch>): copies the addon in as pg25.node
// with pg25.json naming the CUDA toolkit it was built with, sets the version to the main package's and runs
// `npm pack`. With --release (the release workflow) a binary built with any CUDA but 12.8 is refused: 12.8
// reaches every driver since R525 and still has sm_90a; CUDA 13's static runtime would need R580.
// Usage: node scripts/pack-platform.js <linux-x64|win32-x64> <pg25.node> --cuda <version> [--release] [--out DIR]
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const [target, binary, ...rest] = process.argv.slice(2)
const flag = name => { const i = rest.indexOf(name); return i >= 0 ? rest[i + 1] : undefined }
function fail (msg) {
  console.error(`pack-platform: ${msg}`)
  process.exit(1)
}

const dir = path.join(root, 'packages', `native-${target}`)
if (!fs.existsSync(path.join(dir, 'package.json'))) fail(`no package for ${target} (packages/native-${target}/package.json)`)
if (!binary || !fs.statSync(binary, { throwIfNoEntry: false })?.isFile()) fail(`the binary ${binary} is not a file`)
const cuda = flag('--cuda')
if (!/^\d+\.\d+(\.\d+)?$/.test(cuda ?? '')) fail('--cuda <version> names the CUDA toolkit the binary was built with')
if (rest.includes('--release') && !cuda.startsWith('12.8')) {
  fail(`${binary} was built with CUDA ${cuda}; releases are built with CUDA 12.8 (drivers R525 and newer). Rebuild it with CUDA 12.8`)
}

const pkgFile = path.join(dir, 'package.json')
const pkg = JSON.parse(fs.readFileSync(pkgFile, 'utf8'))
pkg.version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version
fs.writeFileSync(pkgFile, JSON.stringify(pkg, null, 2) + '\n')
fs.copyFileSync(binary, path.join(dir, 'pg25.node'))
fs.writeFileSync(path.join(dir, 'pg25.json'), JSON.stringify({ cuda }) + '\n')
const out = path.resolve(flag('--out') ?? root)
fs.mkdirSync(out, { recursive: true })
const r = spawnSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: dir, encoding: 'utf8', shell: process.platform === 'win32' })
if (r.status !== 0) fail(`npm pack failed: ${r.stderr}`)
const tarball = path.join(out, JSON.parse(r.stdout)[0].filename)
console.log(tarball)
