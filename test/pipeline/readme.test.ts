import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import { promises as fs, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import ts from 'typescript'
import { GOLDEN, TINY } from '../support/helpers'
import { MockHub } from '../support/mock-hub'

// Every code block of README.md, run as written: JavaScript as an ES module (or CommonJS when it calls
// require), TypeScript transpiled to one, shell with bash, each in one temporary project where
// `@pg25/native` is this package (a symlink, with its `pg25` bin linked as npm links it). Only the
// environment differs from a user's: HF_ENDPOINT names our mock Hub, which serves the tiny-pg25 model as
// Playground's id (a model in the same layout that runs in seconds on a CPU), and HF_HOME is a fresh folder.
const ROOT = path.join(__dirname, '..', '..', '..')
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8')

export interface Block { lang: string, code: string, line: number, skip?: string }

/** The fenced blocks of a Markdown text, each with the reason of a `<!-- readme-test: skip (why) -->` just before it. */
export function codeBlocks (md: string): Block[] {
  const lines = md.split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i])
    if (!open) continue
    const start = i
    const body: string[] = []
    while (++i < lines.length && !/^```\s*$/.test(lines[i])) body.push(lines[i])
    let prev = start - 1
    while (prev >= 0 && lines[prev].trim() === '') prev--
    const skip = /^<!-- readme-test: skip \((.+)\) -->$/.exec(lines[prev] ?? '')?.[1]
    blocks.push({ lang: open[1], code: body.join('\n') + '\n', line: start + 1, ...(skip ? { skip } : {}) })
  }
  return blocks
}

const blocks = codeBlocks(README)

test('the README has runnable blocks, and every skipped one says why', t => {
  t.true(blocks.filter(b => !b.skip && b.lang === 'js').length >= 4)
  t.true(blocks.filter(b => !b.skip && b.lang === 'sh').length >= 3)
  for (const b of blocks) t.true(['js', 'ts', 'sh'].includes(b.lang), `README.md:${b.line}: a \`\`\`${b.lang} block (tag it js, ts or sh)`)
  // Skips stay rare (today: installing from the registry, and the fresh-clone set-up that CI itself runs).
  for (const b of blocks.filter(b => b.skip)) t.log(`skipped README.md:${b.line}: ${b.skip}`)
  t.deepEqual(codeBlocks('x\n<!-- readme-test: skip (no GPU) -->\n\n```sh\nnvidia-smi\n```\n```js\n1\n```\n'),
    [{ lang: 'sh', code: 'nvidia-smi\n', line: 4, skip: 'no GPU' }, { lang: 'js', code: '1\n', line: 7 }])
})

interface Run { code: number | null, out: string }

function exec (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', d => { out += d })
    child.stderr.on('data', d => { out += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', code => { clearTimeout(timer); resolve({ code, out }) })
  })
}

/** Waits until something answers HTTP on the port, or the server exits. */
async function listening (port: number, server: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`the server exited (${server.exitCode}):\n${log()}`)
    try {
      await fetch(`http://127.0.0.1:${port}/health`)
      return
    } catch {
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  }
  throw new Error(`nothing answered on port ${port} within 60 s:\n${log()}`)
}

test('every README block runs as written', async t => {
  // The LoRA section's Hub id serves the golden kohya LoRA (made for tiny-pg25) under the file name it names.
  const loraRepo = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-readme-lora-'))
  await fs.copyFile(path.join(GOLDEN, 'lora', 'lora_kohya.safetensors'), path.join(loraRepo, 'pixel-art-xl.safetensors'))
  const hub = await MockHub.start([{ id: 'playgroundai/playground-v2.5-1024px-aesthetic', dir: TINY }, { id: 'nerijs/pixel-art-xl', dir: loraRepo }])
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-readme-'))
  const servers: ChildProcess[] = []
  try {
    // The files a user of the inpainting section has: a photo and its mask (the golden inpainting case's).
    await fs.copyFile(path.join(GOLDEN, 'inpaint', 'input.png'), path.join(dir, 'room.png'))
    await fs.copyFile(path.join(GOLDEN, 'inpaint', 'mask.png'), path.join(dir, 'mask.png'))
    await fs.writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: 'readme-app', version: '1.0.0', private: true }))
    await fs.mkdir(path.join(dir, 'node_modules', '@pg25'), { recursive: true })
    await fs.mkdir(path.join(dir, 'node_modules', '.bin'))
    await fs.symlink(ROOT, path.join(dir, 'node_modules', '@pg25', 'native'))
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
    for (const [name, file] of Object.entries(pkg.bin as Record<string, string>)) {
      await fs.symlink(path.join('..', '@pg25', 'native', file), path.join(dir, 'node_modules', '.bin', name))
      await fs.chmod(path.join(ROOT, file), 0o755) // as npm's bin linking does
    }
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HF_ENDPOINT: hub.url,
      HF_HOME: path.join(dir, 'hf-home'),
      XDG_CACHE_HOME: path.join(dir, 'cache'),
      npm_config_cache: path.join(dir, 'npm-cache'), // npx finds `pg25` in node_modules/.bin, never the registry
      npm_config_offline: 'true'
    }
    for (const k of ['HF_HUB_CACHE', 'HF_TOKEN', 'HF_HUB_OFFLINE', 'PG25_MODEL', 'PG25_CUDA_EMULATION', 'PG25_ADDON', 'PG25_DEMO_DIR']) delete env[k]

    for (const [i, b] of blocks.entries()) {
      if (b.skip) continue
      const where = `README.md:${b.line}`
      let run: Run
      if (b.lang === 'sh' && /\bpg25 serve\b/.test(b.code)) {
        // A server runs until stopped: it stays up for the blocks after it, as in a second terminal.
        const port = Number(/--port (\d+)/.exec(b.code)?.[1])
        t.true(port > 0, `${where}: a serve block names its --port`)
        const server = spawn('bash', ['-c', b.code], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
        let log = ''
        server.stdout!.on('data', d => { log += d })
        server.stderr!.on('data', d => { log += d })
        servers.push(server)
        await listening(port, server, () => log)
        continue
      } else if (b.lang === 'sh') {
        run = await exec('bash', ['-e', '-c', b.code], dir, env, 120_000)
      } else {
        const code = b.lang === 'ts' ?
          ts.transpileModule(b.code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText :
          b.code
        const file = path.join(dir, `block-${i}.${/\brequire\(/.test(code) ? 'cjs' : 'mjs'}`)
        await fs.writeFile(file, code)
        run = await exec(process.execPath, [file], dir, env, 120_000)
      }
      t.is(run.code, 0, `${where} failed:\n${b.code}\n${run.out}`)
      t.log(`${where}: ${run.out.trim().split('\n').slice(-3).join(' | ')}`)
      // The images a block names are written, and are images.
      for (const name of new Set(b.code.match(/[\w-]+\.png\b/g) ?? [])) {
        const bytes = await fs.readFile(path.join(dir, name)).catch(() => Buffer.alloc(0))
        t.is(bytes.subarray(1, 4).toString('latin1'), 'PNG', `${where} wrote ${name}`)
      }
    }
    // The Hub ids were fetched from the mock Hub into the Python cache layout under HF_HOME.
    t.true(hub.requests.some(r => r.path.includes('playgroundai/playground-v2.5-1024px-aesthetic')))
    const snapshots = path.join(dir, 'hf-home', 'hub', 'models--playgroundai--playground-v2.5-1024px-aesthetic', 'snapshots')
    t.is((await fs.readdir(snapshots)).length, 1)
    const lora = path.join(dir, 'hf-home', 'hub', 'models--nerijs--pixel-art-xl', 'snapshots', hub.repos.get('nerijs/pixel-art-xl')!.commit, 'pixel-art-xl.safetensors')
    t.deepEqual(await fs.readFile(lora), await fs.readFile(path.join(loraRepo, 'pixel-art-xl.safetensors')))
  } finally {
    for (const s of servers) {
      if (s.exitCode === null && s.pid !== undefined) process.kill(-s.pid, 'SIGTERM')
    }
    await hub.close()
    await fs.rm(dir, { recursive: true, force: true })
    await fs.rm(loraRepo, { recursive: true, force: true })
  }
})
