// Preloaded by `bun test` (bunfig.toml). Tests that build native kernels (g++ on a 2-core
// machine, nvcc for three architectures) take seconds, not milliseconds.
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(120_000);
