// Check a CAR written by `ledgerfs car pack` with the reference
// implementations:
//
//   node check_ledgerfs_car.mjs --car F.car --cids CIDS --kind json|raw
//        [--roots N,M...] FILE...
//
// CIDS is pack's output (one CID per FILE, same order); --roots the 1-based
// file numbers given to pack (default: every file). Checks: the header's
// roots; every block re-hashed (CID.create(1, code, sha256(bytes))); the
// printed CIDs are the blocks' CIDs; raw blocks hold the files' bytes; each
// dag-cbor block decodes with @ipld/dag-cbor to the value @ipld/dag-json
// reads from the source file, re-encodes to the same bytes, and equals the
// reference encoding of that value.
//
// JavaScript has one number type, so the reference encoder writes a float
// with an integral value (1.0, -0.0, 4.5e15) as an integer; for a source
// file with such floats, FILE.cbor.hex holds the bytes DAG-CBOR requires
// (worked out by hand from the spec) and the block must equal those.
import { readFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { check, hex, bytesEqual, sameValue, readCar, run, dagCbor, decodeDagJson, raw } from './common.mjs'

run(async () => {
  const { values: opt, positionals: files } = parseArgs({
    allowPositionals: true,
    options: {
      car: { type: 'string' },
      cids: { type: 'string' },
      kind: { type: 'string' },
      roots: { type: 'string' }
    }
  })
  check(opt.car && opt.cids && ['json', 'raw'].includes(opt.kind) && files.length,
    'usage: check_ledgerfs_car.mjs --car F --cids F --kind json|raw [--roots N,...] FILE...')

  const printed = (await readFile(opt.cids, 'utf8')).split('\n').filter(Boolean)
  check(printed.length === files.length,
    `pack printed ${printed.length} CIDs for ${files.length} files`)

  const car = await readCar(opt.car)

  const rootIdx = opt.roots ? opt.roots.split(',').map((n) => Number(n) - 1) : files.map((_, i) => i)
  const wantRoots = [...new Set(rootIdx.map((i) => printed[i]))]
  check(JSON.stringify(car.roots) === JSON.stringify(wantRoots),
    `roots are ${car.roots.join(' ')}, expected ${wantRoots.join(' ')}`)

  const byCid = new Map(car.blocks.map((b) => [b.cid.toString(), b]))
  check(byCid.size === car.blocks.length, 'a block appears twice')
  check(byCid.size === new Set(printed).size,
    `${car.blocks.length} blocks for ${new Set(printed).size} distinct files`)

  let exact = 0
  let floatLimited = 0
  for (const [i, file] of files.entries()) {
    const block = byCid.get(printed[i])
    check(block, `no block ${printed[i]} (printed for ${file}) in the CAR`)
    const source = await readFile(file)
    if (opt.kind === 'raw') {
      check(block.cid.code === raw.code, `${file}: codec 0x${block.cid.code.toString(16)}, expected raw`)
      check(bytesEqual(block.bytes, source), `${file}: block bytes differ from the file`)
      exact++
      continue
    }
    check(block.cid.code === dagCbor.code, `${file}: codec 0x${block.cid.code.toString(16)}, expected dag-cbor`)
    const decoded = dagCbor.decode(block.bytes) // strict: rejects non-canonical input
    const want = decodeDagJson(source)
    sameValue(decoded, want, file)

    const ref = dagCbor.encode(want)
    const sidecar = `${file}.cbor.hex`
    if (existsSync(sidecar)) {
      const expected = (await readFile(sidecar, 'utf8')).replace(/\s+/g, '')
      check(hex(block.bytes) === expected,
        `${file}: block is\n  ${hex(block.bytes)}\nexpected (by hand, DAG-CBOR spec)\n  ${expected}`)
      check(!bytesEqual(ref, block.bytes),
        `${file}: has a .cbor.hex but the reference encodes it identically; drop the sidecar`)
      floatLimited++
      continue
    }
    check(bytesEqual(dagCbor.encode(decoded), block.bytes),
      `${file}: @ipld/dag-cbor re-encodes the block differently:\n  ${hex(dagCbor.encode(decoded))}\nvs\n  ${hex(block.bytes)}`)
    check(bytesEqual(ref, block.bytes),
      `${file}: block differs from the reference encoding of the document:\n  ledgerfs  ${hex(block.bytes)}\n  reference ${hex(ref)}`)
    exact++
  }
  console.log(`ok ${opt.car}: ${car.blocks.length} blocks, ${car.roots.length} roots; ` +
    `${exact} byte-identical to the reference, ${floatLimited} checked against hand-made bytes (integral floats)`)
})
