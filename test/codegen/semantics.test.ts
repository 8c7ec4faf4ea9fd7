// Semantics: every operator and exact intrinsic at every type gives bit-identical results on the
// JS reference and the CPU-native backend, including the edges where C and JS differ by default
// (division by zero, INT_MIN / -1, shifts by 32 or more, unsigned wrap-around, NaN comparisons).
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { findCxx } from "../../runtime/toolchain.ts";
import { loadKernels } from "../../modules/load.ts";
import { F_OUT, I_OUT, U_OUT } from "../fixtures/ops.ts";
import { freshSeed, maxUlp, rng } from "../util.ts";

const NO_CXX = findCxx().tool ? undefined : findCxx().reason;
const FILE = resolve(import.meta.dir, "../fixtures/ops.ts");

const F_EDGES = [0, -0, 1, -1, 0.5, 1e-30, -1e30, 3.4e38, Infinity, -Infinity, NaN, 2048.9999, -7.5];
const I_EDGES = [0, 1, -1, 2, 31, 32, 33, -32, 2147483647, -2147483648, 1000, -1000];
const U_EDGES = [0, 1, 2, 31, 32, 33, 4294967295, 2147483648, 2654435761, 1000003];

function inputs(r: () => number, n: number) {
  const pick = <T>(edges: T[], fresh: () => T) => (r() < 0.3 ? edges[Math.floor(r() * edges.length)]! : fresh());
  const f = () => Float32Array.from({ length: n }, () => pick(F_EDGES, () => (r() - 0.5) * 10 ** Math.floor(r() * 8 - 3)));
  const i = () => Int32Array.from({ length: n }, () => pick(I_EDGES, () => (r() < 0.5 ? Math.floor((r() - 0.5) * 200) : (r() * 2 ** 32) | 0)));
  const u = () => Uint32Array.from({ length: n }, () => pick(U_EDGES, () => (r() < 0.5 ? Math.floor(r() * 100) : (r() * 2 ** 32) >>> 0)));
  return { fa: f(), fb: f(), ia: i(), ib: i(), ua: u(), ub: u() };
}

test.skipIf(NO_CXX !== undefined)(`every operator agrees bit for bit between JS and CPU${NO_CXX ? ` (skipped: ${NO_CXX})` : ""}`, async () => {
  const [js, cpu] = await Promise.all([loadKernels(FILE, { backend: "js" }), loadKernels(FILE, { backend: "cpu" })]);
  const seed = freshSeed("semantics");
  const n = 8192;
  const inp = inputs(rng(seed), n);
  const outs = [js, cpu].map((m) => {
    const o = { fo: new Float32Array(n * F_OUT), io: new Int32Array(n * I_OUT), uo: new Uint32Array(n * U_OUT) };
    m.kernels.ops!(n, inp.fa, inp.fb, inp.ia, inp.ib, inp.ua, inp.ub, o.fo, o.io, o.uo);
    return o;
  });
  const [a, b] = outs as [(typeof outs)[0], (typeof outs)[0]];
  for (const [name, width] of [["fo", F_OUT], ["io", I_OUT], ["uo", U_OUT]] as const) {
    const { ulp, at } = maxUlp(a[name], b[name]);
    if (ulp !== 0) {
      const item = Math.floor(at / width);
      const inputsAt = `x=${inp.fa[item]} y=${inp.fb[item]} a=${inp.ia[item]} b=${inp.ib[item]} p=${inp.ua[item]} q=${inp.ub[item]}`;
      throw new Error(`${name} output ${at % width} differs: js ${a[name][at]} vs cpu ${b[name][at]} for ${inputsAt} (seed ${seed})`);
    }
    expect(ulp).toBe(0);
  }
});
