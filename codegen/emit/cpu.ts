// CPU delta of the C emitter: C++20 with OpenMP, real atomics through std::atomic_ref, and an
// `extern "C"` entry point that runs the body over [0, n) in a parallel loop (serial for small n,
// where starting the thread team would cost more than the work). Kernels with a schedule
// (codegen/schedule.ts) run as passes:
//   split  chunks of points in parallel; within a chunk one pass (level) after the other, so one
//          level's table is hot at a time;
//   owner  passes in parallel (largest first), each over all points on one thread: a pass is the
//          only writer of its memory, so its atomics are plain read-modify-writes.
// A pass the schedule puts in lane form (schedule.ts) runs 16 points per call, vectorized by the
// C++ compiler, with its prefetch variant a few groups ahead.
import { NGP_ERR_NO_MEMORY, type EmittedModule } from "../../dsl/abi.ts";
import type { SpecializedKernel } from "../ir.ts";
import { emitC, type BodyRenderer, type CParam, type CTarget, type EmitOptions } from "./c_base.ts";
import { CPU_TILES, SLOTS } from "./tile_prelude.ts";

/** Launches below this many items run serially. */
export const OMP_MIN_ITEMS = 4096;
/** Points per chunk of the split schedule: small enough that a chunk's inputs stay in L1. */
export const SPLIT_CHUNK = 256;
/** Threads per lane-form call: 16 f32 lanes fill one AVX-512 register. */
export const LANES = 16;
/** How many lane groups ahead the prefetch variant of a pass runs. */
export const PREFETCH_GROUPS = 4;
/** The scalar form's prefetch distance, in points. */
export const PREFETCH_POINTS = 16;

const cpu: CTarget = {
  name: "cpu",
  head: `#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#define NGP_FN static inline __attribute__((always_inline))`,
  checkedState: `static uint64_t ngp_fault_rec[2];
alignas(16) static char ngp_dummy[16];
#define NGP_COLD static __attribute__((noinline, cold))
NGP_FN uint64_t ngp_load_u64(uint64_t* p) { return std::atomic_ref<uint64_t>(*p).load(std::memory_order_relaxed); }
NGP_FN void ngp_min_u64(uint64_t* p, uint64_t v) {
  std::atomic_ref<uint64_t> a(*p);
  for (uint64_t old = a.load(std::memory_order_relaxed); v < old && !a.compare_exchange_weak(old, v, std::memory_order_relaxed);) {}
}`,
  // The parallel region's barriers order these plain accesses with the threads' atomics.
  checkedLaunch: { before: "ngp_fault_rec[0] = ngp_fault_rec[1] = ~(uint64_t)0;", after: "std::memcpy(ngp_fault_host, ngp_fault_rec, sizeof ngp_fault_host);" },
  tableQualifier: "static const",
  f16Type: "_Float16",
  loadF16: (x) => `(float)${x}`,
  storeF16: (x) => `(_Float16)(${x})`,
  tiles: CPU_TILES,
  kernel(k, params, body) {
    if (k.block) return blocks(k, k.block, params, body);
    if (k.schedule === "lanes") return laned(k, params, body);
    if (k.schedule) return scheduled(k, params, body);
    // The loop counter has the index's type (the runtime keeps n below 2^31): with a 64-bit counter
    // narrowed at each call, GCC does not vectorize the loop.
    const idx = k.index.ty === "u32" ? "uint32_t" : "int32_t";
    const launch = `${unusedLengths(params)}  #pragma omp parallel for schedule(static) if (ngp_n >= ${OMP_MIN_ITEMS})
  for (${idx} ngp_i = 0; ngp_i < (${idx})ngp_n; ++ngp_i) ${call(k, `${k.name}_body`, params)};`;
    return { code: body(`${k.name}_body`, k.body), launch, status: "0" };
  },
};

/** `fn(index, args...)` for thread `i` (an expression of the launcher's loop). */
function call(k: SpecializedKernel, fn: string, params: CParam[], i = "ngp_i"): string {
  const index = i === "ngp_i" ? i : `(${i})`;
  return `${fn}(${[`(${k.index.ty === "u32" ? "uint32_t" : "int32_t"})${index}`, ...params.flatMap((p) => p.args)].join(", ")})`;
}

function unusedLengths(params: CParam[]): string {
  const unused = params.filter((p) => p.buffer && p.args.length === 1).map((p) => `(void)ngp_len_${p.name};`);
  return unused.length ? `  ${unused.join(" ")}\n` : "";
}

/**
 * A block kernel: the blocks in parallel. One that accumulates runs slots of consecutive blocks in
 * parallel instead, each slot with its own zeroed partial sums of the accumulated buffers (passed
 * to the body in their place), then reduces the slots in order (see tile_prelude.ts).
 */
function blocks(k: SpecializedKernel, block: NonNullable<SpecializedKernel["block"]>, params: CParam[], body: BodyRenderer): ReturnType<CTarget["kernel"]> {
  const acc = [...block.accumulates];
  const part = (p: string) => `ngp_part_${p}`;
  const args = ["(uint32_t)ngp_b", "ngp_n", ...params.flatMap((p) => (acc.includes(p.name) ? p.args.map((a) => (a === p.name ? `${part(p.name)} + ngp_s * ngp_len_${p.name}` : a)) : p.args))];
  const head = `${unusedLengths(params)}  if (ngp_n <= 0) return 0;
  const int64_t ngp_blocks = (ngp_n + ${block.rows - 1}) / ${block.rows};`;
  const code = body(`${k.name}_body`, k.body);
  if (acc.length === 0) {
    const launch = `${head}
  #pragma omp parallel for schedule(static) if (ngp_blocks > 1)
  for (int64_t ngp_b = 0; ngp_b < ngp_blocks; ++ngp_b) ${k.name}_body(${args.join(", ")});`;
    return { code, launch, status: "0" };
  }
  // The partial sums' storage grows as needed and is kept across launches (a training step
  // launches every few milliseconds: no allocation or page faults each time).
  const alloc = acc.map((p) => `  static float* ngp_store_${p} = nullptr;
  static size_t ngp_cap_${p} = 0;
  float* ${part(p)} = ngp_partials(&ngp_store_${p}, &ngp_cap_${p}, (size_t)(ngp_slots * ngp_len_${p}));
  if (!${part(p)}) return ${NGP_ERR_NO_MEMORY};`);
  const launch = `${head}
  const int64_t ngp_slots = ngp_blocks < ${SLOTS} ? ngp_blocks : ${SLOTS};
${alloc.join("\n")}
  #pragma omp parallel for schedule(dynamic, 1) if (ngp_blocks > 1)
  for (int64_t ngp_s = 0; ngp_s < ngp_slots; ++ngp_s)
    for (int64_t ngp_b = ngp_s * ngp_blocks / ngp_slots; ngp_b < (ngp_s + 1) * ngp_blocks / ngp_slots; ++ngp_b)
      ${k.name}_body(${args.join(", ")});
${acc.map((p) => `  ngp_reduce_slots(${p}, ${part(p)}, ngp_slots, ngp_len_${p});`).join("\n")}`;
  return { code, launch, status: "0" };
}

/**
 * `@schedule lanes`: groups of LANES threads in lane form (each statement over the lanes, which the
 * C++ compiler vectorizes: strided rows become gathers, exp calls libmvec's vector variant), the
 * threads after the last whole group one by one.
 */
function laned(k: SpecializedKernel, params: CParam[], body: BodyRenderer): ReturnType<CTarget["kernel"]> {
  const name = k.name;
  const args = (g: string) => [g, ...params.flatMap((q) => q.args)].join(", ");
  const code = [body(`${name}_body`, k.body), `${SIMD_EXPF}\n${body(`${name}_lanes`, k.body, { lanes: LANES })}`].join("\n\n");
  const launch = `${unusedLengths(params)}  const int64_t ngp_groups = ngp_n / ${LANES};
  #pragma omp parallel for schedule(static) if (ngp_n >= ${OMP_MIN_ITEMS})
  for (int64_t ngp_g = 0; ngp_g < ngp_groups; ++ngp_g) ${name}_lanes(${args(`ngp_g * ${LANES}`)});
  for (int64_t ngp_i = ngp_groups * ${LANES}; ngp_i < ngp_n; ++ngp_i) ${call(k, `${name}_body`, params)};`;
  return { code, launch, status: "0" };
}

/**
 * expf's vector variants (glibc's libmvec, linked by CPU_FLAGS), declared once per module for the
 * lane-form kernels: without them a lane loop that calls expf stays scalar. They differ from the
 * scalar expf by at most an ulp or so, as the JS backend's exp may (README, "Backends").
 */
const SIMD_EXPF = `#ifndef NGP_SIMD_EXPF
#define NGP_SIMD_EXPF
#pragma omp declare simd notinbranch
extern "C" float expf(float) noexcept;
#endif`;

/** `@schedule split|owner`: the passes of the schedule phase (schedule.ts). */
function scheduled(k: SpecializedKernel, params: CParam[], body: BodyRenderer): ReturnType<CTarget["kernel"]> {
  if (!k.passes) throw new Error(`internal: '${k.name}' reached the CPU emitter unscheduled`);
  const passes = k.passes;
  const owner = k.schedule === "owner";
  const fns: string[] = [];
  const runs: string[] = [];
  passes.forEach(({ stmts, lanes, prefetch: ahead }, n) => {
    const name = `${k.name}_pass${n}`;
    fns.push(body(name, stmts, { plainAtomics: owner }));
    const scalar = (from: string, to: string) => `for (int64_t ngp_i = ${from}; ngp_i < ${to}; ++ngp_i) ${call(k, name, params)};`;
    const [from, to] = owner ? ["0", "ngp_n"] : ["ngp_c", "ngp_e"];
    const args = (g: string) => [g, ...params.flatMap((q) => q.args)].join(", ");
    if (!lanes) {
      if (!ahead) return void runs.push(scalar(from, to));
      // One point at a time, the table lines of point i + PREFETCH_POINTS prefetched while point
      // i runs (a level's pass walks every point on one thread: nothing else hides the misses).
      fns.push(body(`${name}_prefetch`, ahead, {}));
      const later = `ngp_i + ${PREFETCH_POINTS}`;
      return void runs.push(`for (int64_t ngp_i = ${from}; ngp_i < ${to}; ++ngp_i) { if (${later} < ${to}) ${call(k, `${name}_prefetch`, params, later)}; ${call(k, name, params)}; }`);
    }
    // Whole groups of LANES points in lane form (vectorized), the rest one by one; the table
    // lines of group g + PREFETCH_GROUPS are prefetched while group g runs.
    fns.push(body(`${name}_lanes`, stmts, { plainAtomics: owner, lanes: LANES }));
    if (ahead) fns.push(body(`${name}_prefetch`, ahead, { lanes: LANES }));
    // Across the end of a split chunk too: the next chunk (the same thread's, with a static
    // schedule) then starts with its lines in cache.
    const pf = ahead ? `if (ngp_g + ${(PREFETCH_GROUPS + 1) * LANES} <= ngp_n) ${name}_prefetch(${args(`ngp_g + ${PREFETCH_GROUPS * LANES}`)}); ` : "";
    runs.push(`{
      int64_t ngp_g = ${from};
      for (; ngp_g + ${LANES} <= ${to}; ngp_g += ${LANES}) { ${pf}${name}_lanes(${args("ngp_g")}); }
      ${scalar("ngp_g", to)}
    }`);
  });
  let launch: string;
  if (owner) {
    // Finest (usually largest, most expensive) passes first, so that dynamic scheduling balances.
    const cases = runs.map((run, n) => `      case ${passes.length - 1 - n}: ${run} break;`).reverse();
    launch = `  #pragma omp parallel for schedule(dynamic, 1) if (ngp_n >= ${OMP_MIN_ITEMS})
  for (int32_t ngp_p = 0; ngp_p < ${passes.length}; ++ngp_p) {
    switch (ngp_p) {
${cases.join("\n")}
    }
  }`;
  } else {
    launch = `  #pragma omp parallel for schedule(static) if (ngp_n >= ${OMP_MIN_ITEMS})
  for (int64_t ngp_c = 0; ngp_c < ngp_n; ngp_c += ${SPLIT_CHUNK}) {
    const int64_t ngp_e = ngp_c + ${SPLIT_CHUNK} < ngp_n ? ngp_c + ${SPLIT_CHUNK} : ngp_n;
${runs.map((r) => `    ${r}`).join("\n")}
  }`;
  }
  return { code: fns.join("\n\n"), launch: `${unusedLengths(params)}${launch}`, status: "0" };
}

export function emitCpu(kernels: SpecializedKernel[], opts: EmitOptions = {}): EmittedModule {
  return emitC(kernels, cpu, opts);
}
