// Interop: the real @fireproof/core 0.24.19 writes ledgers, then ledgerfs's
// command line must show them byte for byte as Fireproof itself returns
// them: db.get of every id, db.allDocs(), db.changes(), and the view after
// every commit (`ls/get --at EVENT`).
//
//   node interop.mjs LEDGERFS WORKDIR
//
// Prints "ok"/"not ok" lines and "N passed, N failed"; exits 1 on failure.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, existsSync } from "node:fs";
import { openDb, render, byteSort } from "./common.mjs";

const [LEDGERFS, WORK] = process.argv.slice(2);
const KEYBAG = `${WORK}/keybag`;
const STORE = `${WORK}/storage`;
process.env.FP_KEYBAG_URL = `file://${KEYBAG}`;
mkdirSync(STORE, { recursive: true });

let passed = 0, failed = 0;
function check(ok, what, detail) {
  if (ok) {
    passed++;
    console.log(`ok - ${what}`);
  } else {
    failed++;
    console.log(`not ok - ${what}`);
    if (detail) console.log(detail.split("\n").map((l) => "#   " + l).join("\n"));
  }
}

function lfs(args, storage = STORE) {
  try {
    return {
      status: 0,
      out: execFileSync(LEDGERFS, [args[0], "--fireproof", storage, "--keybag", KEYBAG, ...args.slice(1)], {
        stdio: ["ignore", "pipe", "pipe"],
        maxBuffer: 1 << 28,
      }),
    };
  } catch (e) {
    return { status: e.status, out: e.stdout || Buffer.alloc(0), err: String(e.stderr || e) };
  }
}

// Everything Fireproof shows now: ids and rendered documents.
async function fpView(db) {
  const all = await db.allDocs();
  const ids = byteSort(all.rows.map((r) => r.key));
  const docs = {};
  for (const id of ids) docs[id] = render(await db.get(id));
  return { ids, docs, clock: all.clock.map(String) };
}

// Record the view after each commit (keyed by its single head event).
async function commit(led, fn) {
  const r = await fn(led.db);
  const clock = (r && r.clock ? r.clock : []).map(String);
  if (clock.length === 1) led.snaps.set(clock[0], await fpView(led.db));
  return r;
}

async function compare(led, storage = STORE, { snapshots = true } = {}) {
  const name = led.name;
  const view = await fpView(led.db);
  let r = lfs(["ls", name], storage);
  const want = view.ids.map((i) => i + "\n").join("");
  check(r.status === 0 && r.out.toString() === want, `${name}: ls equals allDocs (${view.ids.length} ids)`,
    `status ${r.status} ${r.err || ""}\nwant:\n${want}\ngot:\n${r.out}`);
  let bad = [];
  for (const id of view.ids) {
    r = lfs(["get", name, id], storage);
    if (r.status !== 0 || r.out.toString() !== view.docs[id])
      bad.push(`${id}: status ${r.status} ${r.err || ""}\nwant:\n${view.docs[id]}got:\n${r.out}`);
  }
  check(!bad.length, `${name}: get equals db.get for every id`, bad.slice(0, 3).join("\n"));
  // The heads and the clock.
  r = lfs(["status", "--json", name], storage);
  const st = r.status === 0 ? JSON.parse(r.out) : {};
  check(JSON.stringify(byteSort(st.heads || [])) === JSON.stringify(byteSort(view.clock)),
    `${name}: heads equal Fireproof's clock (${view.clock.length})`, `want ${view.clock} got ${r.out} ${r.err || ""}`);
  r = lfs(["log", "--json", name], storage);
  const log = r.status === 0 ? JSON.parse(r.out) : [];
  const byEvent = new Map(log.map((e) => [e.event, e]));
  const ch = await led.db.changes();
  bad = [];
  for (const row of ch.rows) {
    const e = byEvent.get(String(row.clock));
    const c = e && e.changes.find((x) => x.id === row.key);
    if (!c || (c.doc === null) !== !!row.value._deleted)
      bad.push(`${row.key} at ${row.clock}: ${JSON.stringify(c)}`);
  }
  check(r.status === 0 && !bad.length, `${name}: log holds every change db.changes() reports (${ch.rows.length})`,
    (r.err || "") + bad.slice(0, 5).join("\n"));
  if (!snapshots) return;
  bad = [];
  for (const [ev, snap] of led.snaps) {
    r = lfs(["ls", "--at", ev, name], storage);
    const w = snap.ids.map((i) => i + "\n").join("");
    if (r.status !== 0 || r.out.toString() !== w) {
      bad.push(`ls --at ${ev}: status ${r.status} ${r.err || ""}\nwant:\n${w}got:\n${r.out}`);
      continue;
    }
    for (const id of snap.ids) {
      r = lfs(["cat", name, "--at", ev, id], storage);
      if (r.status !== 0 || r.out.toString() !== snap.docs[id])
        bad.push(`cat --at ${ev} ${id}: want\n${snap.docs[id]}got:\n${r.out}${r.err || ""}`);
    }
  }
  check(!bad.length, `${name}: the view after each of ${led.snaps.size} commits (ls/cat --at)`, bad.slice(0, 3).join("\n"));
}

function ledger(name, storage = STORE) {
  return { name, db: openDb(storage, name), snaps: new Map() };
}

// ---- 1. puts, updates, deletes, bulk, unicode, nesting, numbers, a file ----
const basic = ledger("basic");
await commit(basic, (db) => db.put({ _id: "doc1", title: "hello", n: 1 }));
await commit(basic, (db) => db.put({ _id: "doc2", list: [1, 2, 3], nested: { a: { b: { c: [true, false, null] } } } }));
await commit(basic, (db) => db.put({ _id: "doc1", title: "hello again", n: 2 }));
await commit(basic, (db) => db.del("doc2"));
await commit(basic, (db) => db.bulk([
  { _id: "bulk-a", x: 1 }, { _id: "bulk-b", x: 2.5 }, { _id: "bulk-c", s: "quote\" backslash\\ tab\t nl\n ctl\u0001" },
]));
await commit(basic, (db) => db.put({
  _id: "numbers",
  i64max: 9223372036854775807n, i64min: -9223372036854775808n,
  safe: 2 ** 53 - 1, nsafe: -(2 ** 53 - 1), unsafe: 2 ** 53, p60: 2 ** 60,
  big: 1e300, tiny: 5e-324, max: Number.MAX_VALUE, min: Number.MIN_VALUE,
  neg0: -0, half: -1.5, tenth: 0.1, e15: 1e15 + 0.5, e16: 1e16, e21: 1e21,
  frac: 123456789.125, small: 1e-5, edge: 0.0001, hundred: 100.25, third: 1 / 3,
}));
await commit(basic, (db) => db.put({ _id: "unicode", "ключ": "значение", emoji: "😀✓", mixed: "café ☕ 中文", "é": ["ü", { "ß": "ẞ" }] }));
await commit(basic, (db) => db.put({ _id: "bytes-and-links", raw: new Uint8Array([0, 1, 2, 250, 255]), empty: {}, none: [] }));
for (const id of ["café-☕", "ü/slash", "a/slash", "%percent", ".hidden", "space id", "中文"]) {
  try {
    await commit(basic, (db) => db.put({ _id: id, id }));
  } catch (e) {
    console.log(`# Fireproof refused id ${JSON.stringify(id)}: ${e.message.split("\n")[0]}`);
  }
}
const text = "hello attachments\n";
await commit(basic, (db) => db.put({
  _id: "withfile", note: "has a file",
  _files: { "hello.txt": new File([text], "hello.txt", { type: "text/plain", lastModified: 1700000000000 }) },
}));
await commit(basic, (db) => db.put({ _id: "doc1", title: "third", n: 3 }));
await compare(basic);
{
  const r = lfs(["get", "--file", "hello.txt", "basic", "withfile"]);
  check(r.status === 0 && r.out.toString() === text, "basic: get --file returns the attachment's bytes",
    `status ${r.status} ${r.err || ""} got ${JSON.stringify(r.out.toString())}`);
}

// ---- 2. a commit split over several car files ----
const split = ledger("split");
const big = "x".repeat(60000);
await commit(split, (db) => db.bulk(Array.from({ length: 30 }, (_, i) => ({ _id: `big-${String(i).padStart(2, "0")}`, i, big }))));
await commit(split, (db) => db.put({ _id: "after", ok: true }));
{
  const meta = JSON.parse(readFileSync(`${STORE}/split/meta/main.json`, "utf8"));
  const before = split.snaps.size;
  check(before >= 1, "split: commits recorded");
  // The bulk commit's own meta is gone; count the cars of the header log.
  const cars = readdirSync(`${STORE}/split/data`).filter((f) => f.endsWith(".car")).length;
  check(cars >= 4, `split: the big commit wrote several car files (${cars} cars in all)`, JSON.stringify(meta));
}
await compare(split);

// ---- 3. a compacted ledger (twice: the second removes the first's cars) ----
const comp = ledger("compacted");
for (let i = 0; i < 12; i++) await commit(comp, (db) => db.put({ _id: `c${i % 5}`, i }));
await commit(comp, (db) => db.del("c3"));
await comp.db.compact();
for (let i = 0; i < 4; i++) await commit(comp, (db) => db.put({ _id: `d${i}`, i }));
await comp.db.compact();
await commit(comp, (db) => db.put({ _id: "last", after: "compactions" }));
await compare(comp, STORE, { snapshots: false });
{
  const r = lfs(["log", "--json", "compacted"]);
  const log = r.status === 0 ? JSON.parse(r.out) : [];
  const bad = [];
  for (const e of log) {
    const s = lfs(["ls", "--at", e.event, "compacted"]);
    if (s.status !== 0) bad.push(`${e.event}: ${s.err}`);
  }
  check(log.length > 15 && !bad.length, `compacted: every one of ${log.length} events still has a snapshot`, bad.slice(0, 3).join("\n"));
  // The newest snapshots are exact (their shards and documents are kept).
  const last = [...comp.snaps].slice(-1)[0];
  const s = lfs(["ls", "--at", last[0], "compacted"]);
  check(s.out.toString() === last[1].ids.map((i) => i + "\n").join(""), "compacted: the last commit's snapshot is exact");
}

// ---- 4. two instances synced through an attached remote: several heads ----
const SA = `${WORK}/syncA`, SB = `${WORK}/syncB`, REMOTE = `${WORK}/remote`;
const remote = (tag) => ({
  name: "remote", configHash: () => "remote-" + tag,
  prepare: async () => ({ car: { url: `file://${REMOTE}` }, file: { url: `file://${REMOTE}` }, meta: { url: `file://${REMOTE}` } }),
});
{
  let a = ledger("shared", SA);
  await a.db.put({ _id: "a1", from: "A" });
  await a.db.put({ _id: "same", by: "A" });
  await a.db.close();
  let b = ledger("shared", SB);
  await b.db.put({ _id: "b1", from: "B" });
  await b.db.put({ _id: "same", by: "B" });
  await b.db.del("b1");
  await b.db.put({ _id: "b2", from: "B" });
  await b.db.close();
  a = ledger("shared", SA);
  await a.db.ready();
  await a.db.attach(remote("a"));
  await a.db.close();
  b = ledger("shared", SB);
  await b.db.ready();
  await b.db.attach(remote("b"));
  const heads = (await b.db.allDocs()).clock.length;
  check(heads >= 2, `synced: Fireproof's clock has several heads (${heads})`);
  await compare(b, SB, { snapshots: false });
  await b.db.close();
}

for (const l of [basic, split, comp]) await l.db.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
