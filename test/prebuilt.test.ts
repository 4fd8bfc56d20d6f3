import test from 'ava'
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const ROOT = path.join(__dirname, '..', '..')

// The whole path a user without a toolchain takes: prebuild, pack, install the tarball into an empty
// project whose PATH has node and npm but no cmake, nvcc or C++ compiler, then generate with the demo model.
test('npm pack with prebuilds installs and runs on a machine with no compiler', async t => {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-pack-'))
  try {
    // Build the prebuild in a copy of the package, so the build/ the other tests load is left alone.
    const pkg = path.join(tmp, 'pkg')
    const { stdout: files } = await run('git', ['ls-files'], { cwd: ROOT })
    for (const f of files.split('\n').filter(Boolean)) {
      await fs.mkdir(path.dirname(path.join(pkg, f)), { recursive: true })
      await fs.copyFile(path.join(ROOT, f), path.join(pkg, f))
    }
    await fs.cp(path.join(ROOT, 'dist', 'lib'), path.join(pkg, 'dist', 'lib'), { recursive: true })
    await fs.symlink(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'))
    await run('npm', ['run', 'prebuild'], { cwd: pkg, maxBuffer: 64 << 20 })
    const prebuilt = await fs.readdir(path.join(pkg, 'prebuilds', 'linux-x64'))
    t.deepEqual(prebuilt, ['@pg25+native.node'])
    const { stdout: packed } = await run('npm', ['pack', '--pack-destination', tmp], { cwd: pkg, maxBuffer: 64 << 20 })
    const tarball = path.join(tmp, packed.trim().split('\n').pop()!)

    // A PATH with node, npm and a shell only.
    const bin = path.join(tmp, 'bin')
    await fs.mkdir(bin)
    const npmCli = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js')
    await fs.symlink(process.execPath, path.join(bin, 'node'))
    await fs.writeFile(path.join(bin, 'npm'), `#!/bin/sh\nexec "${process.execPath}" "${npmCli}" "$@"\n`, { mode: 0o755 })
    await fs.symlink('/bin/sh', path.join(bin, 'sh'))
    const env = { ...process.env, PATH: bin, PG25_DEMO_DIR: path.join(tmp, 'demo-model'), npm_config_nodedir: '' }
    for (const tool of ['cmake', 'nvcc', 'g++', 'c++', 'make']) {
      await t.throwsAsync(run(tool, ['--version'], { env }), undefined, `${tool} must be absent`)
    }

    const app = path.join(tmp, 'app')
    await fs.mkdir(app)
    await fs.writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
    await run(path.join(bin, 'npm'), ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], { cwd: app, env, maxBuffer: 64 << 20 })
    const installed = path.join(app, 'node_modules', '@pg25', 'native')
    await t.throwsAsync(fs.access(path.join(installed, 'build')), undefined, 'nothing was compiled')
    const script = `
      const gyp = require('node-gyp-build')
      console.log(gyp.resolve(${JSON.stringify(installed)}))
      const { Pipeline, ensureDemoModel } = require('@pg25/native')
      ;(async () => {
        const pipe = await Pipeline.fromPretrained(await ensureDemoModel(), { onWarning: () => {} })
        const r = await pipe.generate('a cat in a spacesuit', { steps: 2, seed: 1 })
        console.log(r.images[0].width, (await r.images[0].toPNG()).length > 1000)
        await pipe.dispose()
      })()`
    const { stdout } = await run(path.join(bin, 'node'), ['-e', script], { cwd: app, env })
    const [resolved, result] = stdout.trim().split('\n')
    t.true(resolved.includes(path.join('prebuilds', 'linux-x64')), resolved)
    t.is(result, '256 true')
  } finally {
    await fs.rm(tmp, { recursive: true, force: true })
  }
})
