// Compare what ledgerfs prints about a reference CAR with the reference:
//
//   node compare.mjs ls EXPECT.json LS.json
//       LS.json (`ledgerfs car ls --json`) equals EXPECT.json.
//   node compare.mjs cat F.car WORKDIR
//       For every block: `$LEDGERFS car cat F.car CID` prints a raw block's
//       bytes, and a dag-cbor block as JSON that @ipld/dag-json reads back
//       to the value @ipld/dag-cbor decodes from the block, and that
//       `ledgerfs car pack --json` turns back into the same CID. A block
//       with an integer outside int64 (no JSON form in ledgerfs) must fail
//       with status 1 and say so.
import { readFile, writeFile } from 'node:fs/promises'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { check, bytesEqual, sameValue, readCar, run, dagCbor, decodeDagJson, raw, show } from './common.mjs'

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

function outsideInt64 (v) {
  if (typeof v === 'bigint') return v < INT64_MIN || v > INT64_MAX
  if (Array.isArray(v)) return v.some(outsideInt64)
  if (v && typeof v === 'object' && !(v instanceof Uint8Array) && v.asCID !== v) {
    return Object.values(v).some(outsideInt64)
  }
  return false
}

function ledgerfs (...args) {
  const prog = process.env.LEDGERFS
  check(prog, 'LEDGERFS is not set')
  const r = spawnSync(prog, args, { maxBuffer: 64 << 20 })
  check(!r.error, `cannot run ${prog}: ${r.error}`)
  check(r.signal === null, `ledgerfs ${args.join(' ')} was killed by ${r.signal}`)
  return r
}

async function compareLs (expectPath, actualPath) {
  const want = JSON.parse(await readFile(expectPath, 'utf8'))
  const got = JSON.parse(await readFile(actualPath, 'utf8'))
  sameValue(got, want, actualPath)
  console.log(`ok ${actualPath} matches ${expectPath}`)
}

async function compareCat (carPath, workdir) {
  const car = await readCar(carPath)
  let n = 0
  for (const { cid, bytes } of car.blocks) {
    const r = ledgerfs('car', 'cat', carPath, cid.toString())
    if (cid.code === raw.code) {
      check(r.status === 0, `cat ${cid}: status ${r.status}: ${r.stderr}`)
      check(bytesEqual(r.stdout, bytes), `cat ${cid}: bytes differ`)
      n++
      continue
    }
    const value = dagCbor.decode(bytes)
    if (outsideInt64(value)) {
      check(r.status === 1 && /outside the 64-bit/.test(r.stderr),
        `cat ${cid} (integers beyond int64): expected status 1 and a clear message, got ${r.status}: ${r.stderr}`)
      n++
      continue
    }
    check(r.status === 0, `cat ${cid}: status ${r.status}: ${r.stderr}`)
    let shown
    try {
      shown = decodeDagJson(r.stdout)
    } catch (err) {
      throw new Error(`cat ${cid}: @ipld/dag-json cannot read ledgerfs's JSON (${err.message}):\n${r.stdout}`)
    }
    sameValue(shown, value, `cat ${cid}`)
    const json = join(workdir, `${cid}.json`)
    await writeFile(json, r.stdout)
    const p = ledgerfs('car', 'pack', '--json', join(workdir, `${cid}.car`), json)
    check(p.status === 0, `pack of cat ${cid}: status ${p.status}: ${p.stderr}`)
    check(p.stdout.toString().trim() === cid.toString(),
      `cat ${cid} then pack --json gives ${p.stdout.toString().trim()} (value ${show(value).slice(0, 200)})`)
    n++
  }
  console.log(`ok ${carPath}: cat agrees with the reference on ${n} blocks`)
}

run(async () => {
  const [mode, a, b] = process.argv.slice(2)
  if (mode === 'ls' && a && b) return compareLs(a, b)
  if (mode === 'cat' && a && b) return compareCat(a, b)
  check(false, 'usage: compare.mjs ls EXPECT.json LS.json | compare.mjs cat F.car WORKDIR')
})
