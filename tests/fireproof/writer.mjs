// A Fireproof application for the shell tests: each run opens the ledger,
// commits, closes — as an application would, in its own process.
//
//   node writer.mjs STORAGE NAME put ID JSON      one put
//   node writer.mjs STORAGE NAME del ID           one delete
//   node writer.mjs STORAGE NAME bulk N PREFIX    one bulk commit of N docs
//   node writer.mjs STORAGE NAME loop N PREFIX    N puts, one per commit,
//                                                 printing each id when done
//   node writer.mjs STORAGE NAME alldocs          print the ids, one a line
//
// FP_KEYBAG_URL must be set.
import { openDb } from "./common.mjs";

const [storage, name, cmd, a, b] = process.argv.slice(2);
const db = openDb(storage, name);
if (cmd === "put") {
  await db.put({ ...JSON.parse(b), _id: a });
} else if (cmd === "del") {
  await db.del(a);
} else if (cmd === "bulk") {
  const docs = [];
  for (let i = 0; i < Number(a); i++)
    docs.push({ _id: `${b}${String(i).padStart(6, "0")}`, i, text: `document ${i} of ${a}`, tags: ["x", "y"], ok: i % 2 === 0 });
  for (let i = 0; i < docs.length; i += 1000) await db.bulk(docs.slice(i, i + 1000));
} else if (cmd === "loop") {
  for (let i = 0; i < Number(a); i++) {
    await db.put({ _id: `${b}${i}`, i });
    console.log(`${b}${i}`);
  }
} else if (cmd === "alldocs") {
  const t0 = process.hrtime.bigint();
  const all = await db.allDocs();
  const t1 = process.hrtime.bigint();
  for (const r of all.rows) console.log(r.key);
  console.error(`alldocs_ms ${(Number(t1 - t0) / 1e6).toFixed(1)}`);
} else {
  console.error(`writer.mjs: unknown command ${cmd}`);
  process.exit(2);
}
await db.close();
process.exit(0);
