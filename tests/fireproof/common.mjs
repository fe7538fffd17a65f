// Shared by the Fireproof interop scripts: open a ledger with the real
// @fireproof/core, and render a document exactly as ledgerfs shows one
// (src/dagjson.h: keys sorted bytewise, two-space indent, integers as
// integers, other numbers in the fewest digits that read back, links as
// {"/": cid}, bytes as {"/": {"bytes": base64}}, trailing newline).
import { fireproof } from "@fireproof/core";
import { CID } from "multiformats/cid";

export function openDb(storageDir, name) {
  const base = `file://${storageDir}`;
  process.env.FP_STORAGE_URL = base;
  return fireproof(name, { storeUrls: { base } });
}

const utf8 = (s) => Buffer.from(s, "utf8");

function str(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20) out += "\\u00" + c.toString(16).toUpperCase().padStart(2, "0");
    else out += ch;
  }
  return out + '"';
}

// ledgerfs's dump_real: the shortest "%.Pg" that reads back, ".0" added
// when it would read as an integer, and the full form for exponents from
// P to 15.
export function real(x) {
  const [m, e] = x.toExponential().split("e");
  const neg = m.startsWith("-");
  const digits = m.replace("-", "").replace(".", "");
  const P = digits.length;
  const X = parseInt(e, 10);
  const sign = neg ? "-" : "";
  if (X < -4 || X >= P) {
    if (X >= P && X < 16) return sign + digits.padEnd(X + 1, "0") + ".0";
    const mant = P > 1 ? digits[0] + "." + digits.slice(1) : digits;
    const es = (X < 0 ? "-" : "+") + String(Math.abs(X)).padStart(2, "0");
    return sign + mant + "e" + es;
  }
  if (X >= 0) {
    const frac = digits.slice(X + 1);
    return sign + digits.slice(0, X + 1) + "." + (frac || "0");
  }
  return sign + "0." + "0".repeat(-X - 1) + digits;
}

function value(v, depth) {
  const ind = "  ".repeat(depth + 1), end = "  ".repeat(depth);
  if (v === null) return "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") {
    if (Number.isSafeInteger(v)) return Object.is(v, -0) ? "0" : String(v);
    return real(v);
  }
  if (typeof v === "string") return str(v);
  const cid = CID.asCID(v);
  if (cid) return value({ "/": cid.toString() }, depth);
  if (v instanceof Uint8Array)
    return value({ "/": { bytes: Buffer.from(v).toString("base64").replace(/=+$/, "") } }, depth);
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    return "[\n" + v.map((x) => ind + value(x === undefined ? null : x, depth + 1)).join(",\n") + "\n" + end + "]";
  }
  const keys = Object.keys(v)
    .filter((k) => v[k] !== undefined && typeof v[k] !== "function")
    .sort((a, b) => Buffer.compare(utf8(a), utf8(b)));
  if (!keys.length) return "{}";
  return "{\n" + keys.map((k) => ind + str(k) + ": " + value(v[k], depth + 1)).join(",\n") + "\n" + end + "}";
}

export function render(doc) {
  return value(doc, 0) + "\n";
}

export function byteSort(ids) {
  return [...ids].sort((a, b) => Buffer.compare(utf8(a), utf8(b)));
}
