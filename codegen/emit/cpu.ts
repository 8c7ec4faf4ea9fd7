// CPU delta of the C emitter: C++20 with OpenMP, real atomics through std::atomic_ref, and an
// `extern "C"` entry point that runs the body over [0, n) in a parallel loop (serial for small n,
// where starting the thread team would cost more than the work).
import type { EmittedModule } from "../../runtime/abi.ts";
import type { SpecializedKernel } from "../specialize.ts";
import { emitC, entryParams, type CTarget } from "./c_base.ts";

/** Launches below this many items run serially. */
export const OMP_MIN_ITEMS = 4096;

const cpu: CTarget = {
  name: "cpu",
  head: `#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#define NGP_FN static inline
template <class T> NGP_FN void ngp_atomic_add(T* p, T v) { std::atomic_ref<T>(*p).fetch_add(v, std::memory_order_relaxed); }
NGP_FN uint32_t ngp_f32_bits(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }
NGP_FN float ngp_bits_f32(uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }
NGP_FN uint32_t ngp_clz(uint32_t x) { return x == 0 ? 32u : (uint32_t)__builtin_clz(x); }`,
  tableQualifier: "static const",
  f16Type: "_Float16",
  loadF16: (x) => `(float)${x}`,
  storeF16: (x) => `(_Float16)(${x})`,
  launcher(k, params) {
    const args = [`(${k.index.ty === "u32" ? "uint32_t" : "int32_t"})ngp_i`, ...params.map((p) => p.name)].join(", ");
    const unused = params.filter((p) => p.buffer).map((p) => `(void)ngp_len_${p.name};`);
    return `extern "C" int32_t ${k.name}(${entryParams(params)}) {
${unused.length ? `  ${unused.join(" ")}\n` : ""}  #pragma omp parallel for schedule(static) if (ngp_n >= ${OMP_MIN_ITEMS})
  for (int64_t ngp_i = 0; ngp_i < ngp_n; ++ngp_i) ${k.name}_body(${args});
  return 0;
}`;
  },
};

export function emitCpu(kernels: SpecializedKernel[]): EmittedModule {
  return emitC(kernels, cpu);
}
