// An encoding made of hash grids, each over a subset of the input axes with its own levels, table,
// resolutions, precision, probing and variant, their features concatenated per point (Earth4D's
// four 3D grids over (x, y, z, t)); a lone grid over every axis is the one-member case. It owns
// the member HashGrids and nothing else: each grid's kernels read their axes from the full input
// row and write (and read back the gradient of) their part of the concatenated row directly
// (dsl/kernels/lookup.ts inputIndex, outputIndex), so there is no gather or scatter, and every
// per-grid feature (its parameters, gradient, logits, probe table) stays the member's: the
// optimizer, the EMA and checkpoints hold one group per member (groupName).
import type { Backend } from "../runtime/backend.ts";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import type { LoadSettings } from "./common.ts";
import { type Member, encodingMembers, type MemberOptions } from "./encoding_config.ts";
import { HashGrid, checkVariant, type GridMemory, type GridUse } from "./hashgrid.ts";

export * from "./encoding_config.ts";

/**
 * The name of member i's group (of `count`) in the optimizer, the EMA and checkpoints: `kind`
 * itself for a lone grid (as before encodings had members), `${kind}.${i}` otherwise.
 */
export function groupName(kind: "encoding" | "probing", i: number, count: number): string {
  return count === 1 ? kind : `${kind}.${i}`;
}

export class Encoding {
  /** Values per input row. */
  readonly inputDims: number;
  /** Values per output row: the members' levels x features, concatenated. */
  readonly outputDim: number;
  readonly paramCount: number;
  /** Learned probing's logits over every member (0 without probing). */
  readonly logitCount: number;

  private constructor(readonly grids: HashGrid[]) {
    this.inputDims = grids[0]!.place.inputDims;
    this.outputDim = grids[0]!.place.outputStride;
    this.paramCount = grids.reduce((a, g) => a + g.paramCount, 0);
    this.logitCount = grids.reduce((a, g) => a + g.logitCount, 0);
  }

  /**
   * The members (encodingMembers: axes checked, options validated, levels derived), their variants
   * read, then their kernels built; `members[i].seed` defaults to `seed` (the first member's) and
   * differs per member.
   */
  static async create(inputDims: number, members: MemberOptions[], load: LoadSettings = {}, where = "encoding"): Promise<Encoding> {
    return Encoding.fromMembers(encodingMembers(inputDims, members, where), load);
  }

  /**
   * The grids of validated members (encodingMembers), their kernels built side by side (each
   * member's C++ build is a compiler process of its own); `use`: which kernels (GridUse).
   */
  static async fromMembers(members: Member[], load: LoadSettings = {}, use: GridUse = "all"): Promise<Encoding> {
    for (const m of members) await checkVariant(m.settings);
    const built = await Promise.allSettled(members.map((m) => HashGrid.create(m.settings, load, m.place, use)));
    const failed = built.find((b) => b.status === "rejected");
    if (failed) {
      for (const b of built) if (b.status === "fulfilled") b.value.close();
      throw failed.reason;
    }
    return new Encoding(built.map((b) => (b as PromiseFulfilledResult<HashGrid>).value));
  }

  /** Member i's group names (groupName). */
  name(kind: "encoding" | "probing", i: number): string {
    return groupName(kind, i, this.grids.length);
  }

  get backend(): Backend {
    return this.grids[0]!.backend;
  }

  get backendReason(): string {
    return this.grids[0]!.backendReason;
  }

  /** A zeroed f32 buffer on the backend. */
  alloc(length: number): DeviceBuffer<"f32"> {
    return this.grids[0]!.alloc(length);
  }

  close(): void {
    for (const g of this.grids) g.close();
  }

  /** Encode points x ([n][inputDims]); returns [n][outputDim], each member's part written by it. */
  forward(x: Float32Array | DeviceBuffer<"f32">, out?: DeviceBuffer<"f32">): DeviceBuffer<"f32"> {
    const buf = this.grids[0]!.toDevice(x); // uploaded once for every member
    out ??= this.alloc((x.length / this.inputDims) * this.outputDim);
    for (const g of this.grids) g.forward(buf, out);
    return out;
  }

  /**
   * Every member's gradients for dLdy ([n][outputDim], the last forward's points), as
   * HashGrid.backward; with `inputs`, dL/dx ([n][inputDims]), the members' contributions summed.
   */
  backward(dLdy: Float32Array | DeviceBuffer<"f32">, opts: { inputs?: boolean; accumulate?: boolean } = {}): { inputs?: DeviceBuffer<"f32"> } {
    const dy = this.grids[0]!.toDevice(dLdy);
    const dx = opts.inputs ? this.alloc((dy.length / this.outputDim) * this.inputDims) : undefined;
    for (const g of this.grids) g.backward(dy, { accumulate: opts.accumulate, ...(dx ? { inputs: dx } : {}) });
    return dx ? { inputs: dx } : {};
  }

  /** Memory of the members together (HashGrid.memory, summed). */
  memory(featureBytes?: 2 | 4): GridMemory {
    const all = this.grids.map((g) => g.memory(featureBytes));
    return {
      trainingBytes: all.reduce((a, m) => a + m.trainingBytes, 0),
      inferenceBytes: all.reduce((a, m) => a + m.inferenceBytes, 0),
      indexBytes: all.reduce((a, m) => a + m.indexBytes, 0),
    };
  }

  /** The members' parameters, concatenated (f32: an f16 grid's as stored, widened). */
  download(): Float32Array {
    return concat(this.grids.map((g) => Float32Array.from(g.params.download() as ArrayLike<number>)));
  }

  /** Every member's parameters from one concatenated array (as download gives, or an export's features). */
  upload(values: Float32Array | Float16Array): void {
    if (values.length !== this.paramCount) throw new RangeError(`Encoding.upload: ${values.length} values, the encoding has ${this.paramCount} parameters`);
    let at = 0;
    for (const g of this.grids) {
      g.params.upload(values.subarray(at, at + g.paramCount) as never);
      at += g.paramCount;
    }
  }
}

/** Arrays one after the other. */
export function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
}
