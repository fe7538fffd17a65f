// Write CAR files with the reference implementations (@ipld/car CarWriter,
// @ipld/dag-cbor, multiformats) for ledgerfs to read:
//
//   node write_reference_cars.mjs OUTDIR
//
// good-*.car must verify, list and re-encode byte for byte in ledgerfs; for
// each, good-*.expect.json holds what `ledgerfs car ls --json` must print.
// bad-*.car hold CIDs or formats ledgerfs does not support; for each,
// bad-*.expect.txt holds "header" or "block N" (where ledgerfs must report
// the failure). Prints each CAR's name and expected CIDs.
import { writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { CarWriter } from '@ipld/car'
import { sha512 } from 'multiformats/hashes/sha2'
import { CID, sha256, raw, dagCbor, check, run } from './common.mjs'

const DAG_PB = 0x70

async function cborBlock (value) {
  const bytes = dagCbor.encode(value)
  return { cid: CID.create(1, dagCbor.code, await sha256.digest(bytes)), bytes }
}

async function rawBlock (bytes) {
  return { cid: CID.create(1, raw.code, await sha256.digest(bytes)), bytes }
}

async function carBytes (roots, blocks) {
  const { writer, out } = CarWriter.create(roots)
  const chunks = []
  const drain = (async () => { for await (const c of out) chunks.push(c) })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  await drain
  return Buffer.concat(chunks)
}

// Deterministic filler bytes (xorshift32), so runs are reproducible.
function filler (n, seed) {
  const out = new Uint8Array(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

run(async () => {
  const dir = process.argv[2]
  check(dir, 'usage: write_reference_cars.mjs OUTDIR')
  await mkdir(dir, { recursive: true })

  async function good (name, roots, blocks) {
    await writeFile(join(dir, `${name}.car`), await carBytes(roots, blocks))
    const expect = {
      roots: roots.map(String),
      blocks: blocks.map((b) => ({
        cid: b.cid.toString(),
        codec: b.cid.code === raw.code ? 'raw' : 'dag-cbor',
        size: b.bytes.length
      }))
    }
    await writeFile(join(dir, `${name}.expect.json`), JSON.stringify(expect, null, 2) + '\n')
    console.log(`${name}.car: roots ${expect.roots.join(' ') || '(none)'}`)
    for (const b of expect.blocks) console.log(`  ${b.cid} ${b.codec} ${b.size}`)
  }

  async function bad (name, where, bytes) {
    await writeFile(join(dir, `${name}.car`), bytes)
    await writeFile(join(dir, `${name}.expect.txt`), where + '\n')
    console.log(`${name}.car: must be refused at ${where}`)
  }

  const small = await rawBlock(new TextEncoder().encode('hello from the reference implementation\n'))
  const empty = await rawBlock(new Uint8Array(0))
  const large = await rawBlock(filler(1 << 20, 42))

  const doc = await cborBlock({
    title: 'reference document',
    done: false,
    nothing: null,
    yes: true,
    ints: [0, 1, 23, 24, 255, 256, 65535, 65536, 4294967295, 4294967296,
      Number.MAX_SAFE_INTEGER, -1, -24, -25, -256, -257, -65536, -65537,
      -4294967296, -4294967297, Number.MIN_SAFE_INTEGER],
    bigs: [2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n), -(2n ** 53n) - 1n],
    floats: [0.1, 1.5, -2.5, 1e300, -1e-300, 5e-324, 1.7976931348623157e308,
      2.2250738585072014e-308, Math.PI, -123.456],
    bytes: [new Uint8Array(0), Uint8Array.of(0), Uint8Array.of(1, 2),
      Uint8Array.of(255, 254, 253), filler(300, 7)],
    links: [small.cid, empty.cid, large.cid],
    unicode: { é: 1, 日本語: 'テキスト', '🎉': 'party', '': 'empty key', a: 1, aa: 2, b: 3, Z: 4, z: 5, 'ü-longer-key': 6 },
    nested: { a: { b: { c: { d: [[], {}, [[]], { e: [] }] } } } },
    emptyMap: {},
    emptyList: [],
    str: 'with\nnewline, "quotes", \\ backslash, \u0000 nul, \u001f ctrl, \u00e9 and \ud83d\ude00',
    long: 'x'.repeat(70000)
  })
  const list = await cborBlock([doc.cid, 'second', { back: doc.cid, n: -1 }, [], null])
  const str = await cborBlock('a lone string')
  const num = await cborBlock(-42)
  const nul = await cborBlock(null)
  const many = {}
  for (let i = 0; i < 300; i++) many[`k${i}`] = i % 2 ? i : `v${i}`
  const wide = await cborBlock(many)
  const deep = await cborBlock(Array.from({ length: 40 }).reduce((acc) => ({ x: acc }), 'bottom'))

  await good('good-mixed', [doc.cid, small.cid],
    [doc, small, empty, list, str, num, nul, wide, deep])
  await good('good-large', [large.cid], [large])
  await good('good-noroots', [], [small])
  const bigs = await cborBlock({
    max: 2n ** 64n - 1n, min: -(2n ** 64n), justOver: 2n ** 63n, justUnder: -(2n ** 63n) - 1n
  })
  await good('good-bigint', [bigs.cid], [bigs, small])

  // A dag-pb block (as UnixFS writes) after a good one.
  const pbBytes = Uint8Array.of(0x0a, 0x02, 0x08, 0x01)
  const pb = { cid: CID.create(1, DAG_PB, await sha256.digest(pbBytes)), bytes: pbBytes }
  await bad('bad-dagpb-block', 'block 2', await carBytes([doc.cid], [doc, pb]))
  // A raw block named by a sha2-512 CID.
  const s512 = { cid: CID.create(1, raw.code, await sha512.digest(small.bytes)), bytes: small.bytes }
  await bad('bad-sha512-block', 'block 2', await carBytes([small.cid], [small, s512]))
  // A CIDv0 root (base58 "Qm...", dag-pb).
  const v0 = CID.createV0(await sha256.digest(pbBytes))
  await bad('bad-cidv0-root', 'header', await carBytes([v0], [{ cid: v0, bytes: pbBytes }]))
  // A CARv2 wrapping a good CARv1 (pragma, 40-byte header, data, no index).
  const v1 = await carBytes([small.cid], [small])
  const pragma = Uint8Array.of(0x0a, 0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02)
  const header = Buffer.alloc(40)
  header.writeBigUInt64LE(BigInt(pragma.length + 40), 16) // data offset
  header.writeBigUInt64LE(BigInt(v1.length), 24) // data size
  header.writeBigUInt64LE(0n, 32) // no index
  await bad('bad-carv2', 'header', Buffer.concat([pragma, header, v1]))
})
