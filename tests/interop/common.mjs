// Shared helpers of the interop checkers: they judge ledgerfs's output with
// the reference implementations only (@ipld/car, @ipld/dag-cbor,
// @ipld/dag-json, multiformats), never with ledgerfs's own code.
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import * as dagCbor from '@ipld/dag-cbor'
import { CarReader } from '@ipld/car'

export { CID, sha256, raw, dagCbor, CarReader }

// @ipld/dag-json is the reference reading of a JSON document (links, bytes,
// integers beyond 2^53 as BigInt). package.json does not list it; it comes
// with ipfs-car, which depends on it directly.
async function loadDagJson () {
  try {
    return await import('@ipld/dag-json')
  } catch {
    const nested = new URL('./node_modules/ipfs-car/node_modules/@ipld/dag-json/src/index.js', import.meta.url)
    try {
      return await import(fileURLToPath(nested))
    } catch {
      throw new Error('@ipld/dag-json is not installed (it comes with ipfs-car); run scripts/install-deps')
    }
  }
}
export const dagJson = await loadDagJson()

// Read DAG-JSON text with the reference decoder. Surrounding whitespace is
// trimmed first: @ipld/dag-json (cborg's JSON decoder) rejects a top-level
// scalar followed by a newline ("too many terminals") though it is valid
// JSON.
export function decodeDagJson (bytes) {
  const text = Buffer.from(bytes).toString('utf8').replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '')
  return dagJson.decode(new TextEncoder().encode(text))
}

export class CheckError extends Error {}

export function check (ok, message) {
  if (!ok) throw new CheckError(message)
}

export const hex = (bytes) => Buffer.from(bytes).toString('hex')

export function bytesEqual (a, b) {
  return a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0
}

// Describe a value for messages, BigInt included.
export function show (v) {
  return JSON.stringify(v, (k, x) => {
    if (typeof x === 'bigint') return `${x}n`
    if (x instanceof Uint8Array) return `bytes:${hex(x)}`
    const cid = CID.asCID(x)
    if (cid) return `cid:${cid}`
    if (typeof x === 'number' && Object.is(x, -0)) return '-0'
    return x
  })
}

// Deep equality in the IPLD data model: integers compare by value whether
// number or BigInt, floats by identity (so -0 differs from 0), links by CID,
// bytes by content, maps by key set.
export function sameValue (a, b, path = '$') {
  const fail = (why) => { throw new CheckError(`${path}: ${why}: ${show(a)} vs ${show(b)}`) }
  const isInt = (x) => typeof x === 'bigint' || (typeof x === 'number' && Number.isInteger(x))
  if (typeof a === 'bigint' || typeof b === 'bigint') {
    if (!isInt(a) || !isInt(b) || BigInt(a) !== BigInt(b)) fail('integers differ')
    return
  }
  if (typeof a === 'number' || typeof b === 'number') {
    if (!Object.is(a, b)) fail('numbers differ')
    return
  }
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') {
    if (a !== b) fail('values differ')
    return
  }
  const ca = CID.asCID(a)
  const cb = CID.asCID(b)
  if (ca || cb) {
    if (!ca || !cb || ca.toString() !== cb.toString()) fail('links differ')
    return
  }
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array) || !bytesEqual(a, b)) fail('bytes differ')
    return
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) fail('lists differ')
    a.forEach((x, i) => sameValue(x, b[i], `${path}[${i}]`))
    return
  }
  const ka = Object.keys(a).sort()
  const kb = Object.keys(b).sort()
  if (ka.length !== kb.length || ka.some((k, i) => k !== kb[i])) fail('map keys differ')
  for (const k of ka) sameValue(a[k], b[k], `${path}.${JSON.stringify(k)}`)
}

// Read a whole CAR with the reference reader and re-hash every block.
// Returns { roots: [string], blocks: [{ cid, bytes }] } in file order.
export async function readCar (path) {
  const bytes = await readFile(path)
  const reader = await CarReader.fromBytes(bytes)
  check(reader.version === 1, `${path}: CAR version ${reader.version}, expected 1`)
  const roots = (await reader.getRoots()).map(String)
  const blocks = []
  for await (const { cid, bytes: data } of reader.blocks()) {
    check(cid.version === 1, `${path}: block ${cid} is not CIDv1`)
    check(cid.multihash.code === sha256.code && cid.multihash.size === 32,
      `${path}: block ${cid} is not sha2-256`)
    check(cid.code === raw.code || cid.code === dagCbor.code,
      `${path}: block ${cid} has codec 0x${cid.code.toString(16)}`)
    const again = CID.create(1, cid.code, await sha256.digest(data))
    check(again.equals(cid), `${path}: block ${cid} hashes to ${again}`)
    check(cid.toString() === again.toString() && cid.toString().startsWith('b'),
      `${path}: CID text ${cid} is not base32 "b..."`)
    blocks.push({ cid, bytes: data })
  }
  return { roots, blocks }
}

// Run main(), turning a CheckError into "FAIL: ..." and exit status 1.
export function run (main) {
  main().catch((err) => {
    if (err instanceof CheckError) {
      console.error(`FAIL: ${err.message}`)
    } else {
      console.error(err)
    }
    process.exit(1)
  })
}
