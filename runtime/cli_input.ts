// TEMPORARY: the old name of dsl/errors.ts and runtime/files.ts, kept only for the files that still
// import it (train/trainer.ts, train/points.ts, train/config.ts, cli/train.ts, being rewritten for
// issue 17); test/layers.test.ts refuses any other importer. Delete it when they import those two.
export { ExpectedError, UsageError } from "../dsl/errors.ts";
export { checkOutputFile, notRegularFile, readInputFile } from "./files.ts";
