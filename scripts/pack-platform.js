#!/usr/bin/env node
// Packs one per-platform binary package (packages/native-<platform>-<arch>): stages its package.json at
// the main package's version in a temporary folder with the addon as pg25.node and pg25.json naming the
// CUDA toolkit it was built with, and runs `npm pack` there (the working tree is left as it is). With
// --release (the release workflow) a binary built with any CUDA but 12.8 is refused: 12.8 reaches every
// driver since R525 and still has sm_90a; CUDA 13's static runtime would need R580.
// Usage: node scripts/pack-platform.js <linux-x64|win32-x64> <pg25.node> --cuda <version> [--release] [--out DIR]
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
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

const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
pkg.version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version
const stage = fs.mkdtempSync(path.join(os.tmpdir(), `pg25-pack-${target}-`))
fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(pkg, null, 2) + '\n')
fs.copyFileSync(binary, path.join(stage, 'pg25.node'))
fs.copyFileSync(path.join(root, 'LICENSE'), path.join(stage, 'LICENSE'))
fs.writeFileSync(path.join(stage, 'pg25.json'), JSON.stringify({ cuda }) + '\n')
const out = path.resolve(flag('--out') ?? root)
fs.mkdirSync(out, { recursive: true })
const r = spawnSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: stage, encoding: 'utf8', shell: process.platform === 'win32' })
fs.rmSync(stage, { recursive: true, force: true })
if (r.status !== 0) fail(`npm pack failed: ${r.stderr}`)
console.log(path.join(out, JSON.parse(r.stdout)[0].filename))
