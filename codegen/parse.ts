// Phase parse (see compile.ts), the front end: TypeScript source (through ts-morph) -> IR with source spans.
//
// It accepts exactly the kernel-language subset and reports everything else with a coded
// diagnostic. It resolves names (locals, module constants, the dsl's intrinsics and casts,
// helpers in this or other kernel files) but infers no types: that is the checker's job.
//
// It reports every independent mistake, not only the first: a rejected expression is replaced by a
// stand-in, a rejected declaration still declares its name, a rejected parameter or return type
// becomes UNKNOWN. The checker accepts these silently, so one mistake gives one diagnostic.
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { Node, Project, SyntaxKind, ts, type SourceFile, type FunctionDeclaration, type TypeNode } from "ts-morph";
import { lookupIntrinsic } from "../dsl/intrinsics.ts";
import { DiagnosticError, DiagnosticSink, diag, fail, nearest, registerSource, type Span } from "./diagnostics.ts";
import { formOf } from "./forms.ts";
import type { AssignOp, BinOp, ConfigType, Elem, Expr, Func, Param, Program, Scalar, Schedule, Stmt, Type } from "./ir.ts";

const DSL_DIR = resolve(import.meta.dir, "../dsl");
/** The language's own modules; everything else a kernel file imports is another kernel file. */
const LANGUAGE_FILES = new Set(["index.ts", "types.ts", "intrinsics.ts", "tiles.ts"].map((f) => resolve(DSL_DIR, f)));
const SCALAR_NAMES = new Set(["f32", "i32", "u32", "bool", "f16"]);
/** Names that would collide with generated code or be invalid in C++ or CUDA. */
const RESERVED_WORDS = new Set(
  ("auto bool break case char class const constexpr continue default delete do double else enum explicit extern false float for " +
    "friend goto if inline int long mutable namespace new operator private protected public register restrict return short signed " +
    "sizeof static struct switch template this throw true try typedef typename union unsigned using virtual void volatile while " +
    "int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t size_t half NAN INFINITY blockIdx blockDim threadIdx gridDim Math " +
    // C library functions the generated code calls or that a shared library would clash with.
    "abs fabs fabsf floor floorf ceil ceilf trunc truncf round roundf fma fmaf sqrt sqrtf exp expf exp2 exp2f log logf log2 log2f " +
    "pow powf sin sinf cos cosf tan tanf tanh tanhf fmod fmodf fmin fminf fmax fmaxf memcpy memset malloc free printf main " +
    "rsqrtf atomicAdd min max").split(" "),
);

/** Check a name a kernel author declares (parameter, variable, loop variable, function). */
function declared(name: string, at: Node): string {
  if (RESERVED_WORDS.has(name) || /^(ngp_|tbl_|__)/.test(name)) fail("NGP1030", span(at), `'${name}'`);
  return name;
}

const BIN_OPS: Partial<Record<SyntaxKind, BinOp>> = {
  [SyntaxKind.PlusToken]: "+", [SyntaxKind.MinusToken]: "-", [SyntaxKind.AsteriskToken]: "*",
  [SyntaxKind.SlashToken]: "/", [SyntaxKind.PercentToken]: "%", [SyntaxKind.AmpersandToken]: "&",
  [SyntaxKind.BarToken]: "|", [SyntaxKind.CaretToken]: "^", [SyntaxKind.LessThanLessThanToken]: "<<",
  [SyntaxKind.GreaterThanGreaterThanToken]: ">>", [SyntaxKind.GreaterThanGreaterThanGreaterThanToken]: ">>>",
  [SyntaxKind.LessThanToken]: "<", [SyntaxKind.LessThanEqualsToken]: "<=", [SyntaxKind.GreaterThanToken]: ">",
  [SyntaxKind.GreaterThanEqualsToken]: ">=", [SyntaxKind.EqualsEqualsEqualsToken]: "===",
  [SyntaxKind.ExclamationEqualsEqualsToken]: "!==", [SyntaxKind.AmpersandAmpersandToken]: "&&",
  [SyntaxKind.BarBarToken]: "||",
};
const ASSIGN_OPS: Partial<Record<SyntaxKind, AssignOp>> = {
  [SyntaxKind.EqualsToken]: "=", [SyntaxKind.PlusEqualsToken]: "+=", [SyntaxKind.MinusEqualsToken]: "-=",
  [SyntaxKind.AsteriskEqualsToken]: "*=", [SyntaxKind.SlashEqualsToken]: "/=", [SyntaxKind.PercentEqualsToken]: "%=",
  [SyntaxKind.AmpersandEqualsToken]: "&=", [SyntaxKind.BarEqualsToken]: "|=", [SyntaxKind.CaretEqualsToken]: "^=",
  [SyntaxKind.LessThanLessThanEqualsToken]: "<<=", [SyntaxKind.GreaterThanGreaterThanEqualsToken]: ">>=",
  [SyntaxKind.GreaterThanGreaterThanGreaterThanEqualsToken]: ">>>=",
};
/** Operators TypeScript has and we refuse, with the hint that fixes each. */
const REFUSED_OPS: Partial<Record<SyntaxKind, string>> = {
  [SyntaxKind.EqualsEqualsToken]: "use === (the language has no loose equality)",
  [SyntaxKind.ExclamationEqualsToken]: "use !== (the language has no loose equality)",
  [SyntaxKind.AsteriskAsteriskToken]: "use pow(x, y) or multiply",
  [SyntaxKind.InKeyword]: "kernels have no objects to test",
  [SyntaxKind.InstanceOfKeyword]: "kernels have no objects to test",
  [SyntaxKind.CommaToken]: "write separate statements",
};

/** A module-level constant: a scalar literal, a table, or one whose declaration was rejected. */
type ModuleConst = { kind: "scalar"; v: number | boolean; ty: Scalar; abstract: boolean } | { kind: "table"; elem: Scalar; values: number[] } | { kind: "rejected" };
const REJECTED: ModuleConst = { kind: "rejected" };

/**
 * What the parser puts in place of an expression it rejected (and reported): a variable with the
 * empty name, which no author can write; the checker binds that name to an unknown type.
 */
export const STAND_IN = "";
const standIn = (sp: Span): Expr => ({ k: "var", name: STAND_IN, span: sp });
const isStandIn = (e: Expr): boolean => e.k === "var" && e.name === STAND_IN;
/** The type of a parameter or return whose declaration was rejected (compared by identity). */
export const UNKNOWN: Type = { k: "void" };

/** Names visible at the top level of one kernel file. */
class FileScope {
  readonly dsl = new Map<string, string>(); // local name -> name in the dsl
  readonly imports = new Map<string, { file: string; name: string }>();
  readonly functions = new Map<string, FunctionDeclaration>();
  readonly consts = new Map<string, ModuleConst>();
  readonly types = new Map<string, Node>();
  /** A variant's `export const requires = { ... }`: what it needs of the grid's settings. */
  requires: VariantNeeds = {};
  constructor(readonly sf: SourceFile) {}
}

export interface ParseOptions {
  /** Source text to use instead of reading `file` from disk. */
  text?: string;
  /**
   * A variant: a kernel file whose exported functions replace the functions tagged `@replaceable`
   * with the same names (the parts of the hash-grid encoding, dsl/kernels/lookup.ts), wherever
   * they are called.
   */
  variant?: string;
}

/**
 * What a variant needs of the grid's settings, declared in the variant file as
 * `export const requires = { dims: 4, levelsMultipleOf: 4 };` (checked by modules/hashgrid.ts checkVariant).
 */
export interface VariantNeeds {
  /** The input dimension it is written for. */
  dims?: number;
  /** The level count must be a multiple of this (e.g. one level per sub-grid). */
  levelsMultipleOf?: number;
}
const NEEDS: Record<keyof VariantNeeds, { min: number; max: number }> = { dims: { min: 1, max: 8 }, levelsMultipleOf: { min: 1, max: 64 } };

/** A variant file, read and checked: the parts it replaces and what it needs. */
export interface Variant {
  file: string;
  parts: string[];
  requires: VariantNeeds;
}

/**
 * Read the variant `file` of the kernel file `kernels` without compiling anything: a function whose
 * name is near a part's (a `@replaceable` function of `kernels` or of the files it imports) but not
 * one (a misspelling, silently not replacing anything), or no part at all, is NGP1026; a bad
 * `requires`, NGP1059 (thrown as a DiagnosticError, with the file's other top-level mistakes).
 */
export function readVariant(file: string, kernels: string): Variant {
  const sink = new DiagnosticSink();
  const variant = new Parser(sink, resolve(file)).variantFile(resolve(kernels));
  sink.throwIfAny();
  return variant;
}

let sharedProject: Project | undefined;
function project(): Project {
  sharedProject ??= new Project({
    skipAddingFilesFromTsConfig: true,
    skipFileDependencyResolution: true,
    compilerOptions: { target: ts.ScriptTarget.ES2022, allowImportingTsExtensions: true, noEmit: true },
  });
  return sharedProject;
}

/**
 * Parse the kernel file `file` and every kernel file it imports into a Program, reporting mistakes
 * into `sink`. Only syntax errors are thrown (fatal): TypeScript's recovered tree is not worth checking.
 */
export function parseProgram(file: string, sink: DiagnosticSink, opts: ParseOptions = {}): Program {
  return new Parser(sink, opts.variant ? resolve(opts.variant) : undefined).program(resolve(file), opts.text);
}

class Parser {
  constructor(
    private readonly sink: DiagnosticSink,
    private readonly variant?: string,
  ) {}
  private readonly scopes = new Map<string, FileScope>();
  private readonly funcs = new Map<string, Func>();
  /** Functions being lowered, outermost first: a call to one of them is recursion. */
  private readonly lowering: string[] = [];

  program(file: string, text?: string): Program {
    if (this.variant) this.variantFile(file);
    const scope = this.fileScope(file, text);
    const kernels: Func[] = [];
    for (const [name, decl] of scope.functions) {
      if (!isKernel(decl)) continue;
      this.sink.guard(() => kernels.push(this.func(scope, name)));
    }
    return { file, kernels, funcs: this.funcs };
  }

  private variantRead?: Variant;
  /** The variant's file, loaded once; its part names checked against the parts of `kernels` (see readVariant). */
  variantFile(kernels: string): Variant {
    if (this.variantRead) return this.variantRead;
    const file = this.variant!;
    const scope = this.fileScope(file);
    const names = this.replaceable(kernels);
    const listed = names.join(", ");
    const parts = [...scope.functions.keys()].filter((f) => names.includes(f));
    let misspelled = false;
    for (const [name, decl] of scope.functions) {
      const near = parts.includes(name) ? undefined : nearest(name, names);
      if (!near) continue;
      misspelled = true;
      this.sink.report("NGP1026", span(decl.getNameNode()!), `'${name}' is not a part of the encoding`, `did you mean ${near}? A variant's functions replace the @replaceable functions with the same name (${listed})`);
    }
    if (parts.length === 0 && !misspelled) {
      const kernels = [...scope.functions].filter(([, d]) => isKernel(d));
      const at = kernels[0]?.[1].getNameNode();
      const what = kernels.length ? `kernels (${kernels.map(([k]) => k).join(", ")})` : "no kernel";
      this.sink.report(
        "NGP1026",
        at ? span(at) : { file, start: 0, end: 1, line: 1, col: 1 },
        `the file declares ${what} and replaces none of the encoding's parts (${listed})`,
        "a variant of the encoding exports functions named as its @replaceable parts (dsl/kernels/lookup.ts), with their signatures; a kernel file marks its kernels with a /** @kernel */ comment",
      );
    }
    this.variantRead = { file, parts, requires: scope.requires };
    return this.variantRead;
  }

  /** The names of the `@replaceable` functions of `file` and of the kernel files it imports, in order. */
  private replaceable(file: string): string[] {
    const names: string[] = [];
    const seen = new Set<string>();
    const visit = (f: string) => {
      if (seen.has(f)) return;
      seen.add(f);
      const scope = this.fileScope(f);
      for (const [name, decl] of scope.functions) if (isReplaceable(decl) && !names.includes(name)) names.push(name);
      for (const imp of scope.imports.values()) visit(imp.file);
    };
    visit(file);
    return names;
  }

  // ---- files and their top-level declarations -------------------------------------------------

  private fileScope(file: string, text?: string): FileScope {
    const cached = this.scopes.get(file);
    if (cached) return cached;
    const p = project();
    const existing = p.getSourceFile(file);
    if (existing) p.removeSourceFile(existing);
    const sf = text !== undefined ? p.createSourceFile(file, text, { overwrite: true }) : p.addSourceFileAtPath(file);
    registerSource(file, sf.getFullText());
    const scope = new FileScope(sf);
    this.scopes.set(file, scope);
    // The parser recovers from syntax errors; report them rather than compile the recovered tree.
    const syntax = (sf.compilerNode as unknown as { parseDiagnostics?: ts.DiagnosticWithLocation[] }).parseDiagnostics ?? [];
    if (syntax.length) {
      throw new DiagnosticError(syntax.map((d) => {
        const { line, character } = sf.compilerNode.getLineAndCharacterOfPosition(d.start);
        const at = { file, start: d.start, end: d.start + Math.max(1, d.length), line: line + 1, col: character + 1 };
        return diag("NGP1000", at, ts.flattenDiagnosticMessageText(d.messageText, " "));
      }), true);
    }
    for (const st of sf.getStatements()) this.sink.guard(() => this.topLevel(scope, st));
    return scope;
  }

  private topLevel(scope: FileScope, st: Node): void {
    if (Node.isImportDeclaration(st)) return this.importDecl(scope, st);
    if (Node.isFunctionDeclaration(st)) {
      const name = st.getName();
      if (!name) fail("NGP1025", span(st), "a function needs a name");
      this.sink.guard(() => declared(name, st.getNameNode()!)); // still declared, so its calls do not cascade
      scope.functions.set(name, st);
      return;
    }
    if (Node.isInterfaceDeclaration(st) || Node.isTypeAliasDeclaration(st)) {
      scope.types.set(st.getName(), st);
      return;
    }
    if (Node.isClassDeclaration(st)) fail("NGP1005", span(st));
    if (Node.isVariableStatement(st)) {
      // A rejected constant is still declared, so that its uses do not cascade into unknown names.
      const kind = st.getDeclarationKind();
      if (kind !== "const") this.sink.report("NGP1027", span(st), `\`${kind}\` at module level`);
      for (const d of st.getDeclarations()) {
        if (d.getName() === "requires" && scope.sf.getFilePath() === this.variant) {
          scope.requires = this.sink.guard(() => requiresOf(d)) ?? {};
          continue;
        }
        const value = kind === "const" ? this.sink.guard(() => this.moduleConst(scope, d)) : undefined;
        scope.consts.set(d.getName(), value ?? REJECTED);
      }
      return;
    }
    if (Node.isExportDeclaration(st) || Node.isEmptyStatement(st)) return;
    fail("NGP1016", span(st), `${st.getKindName()} at module level`);
  }

  private importDecl(scope: FileScope, st: import("ts-morph").ImportDeclaration): void {
    const spec = st.getModuleSpecifierValue();
    const target = resolveModule(dirname(scope.sf.getFilePath()), spec);
    if (!target) fail("NGP1028", span(st.getModuleSpecifier()), `cannot find module '${spec}'`);
    if (st.getDefaultImport() || st.getNamespaceImport()) fail("NGP1028", span(st), "default and namespace imports", "use named imports: import { f32, floor } from ...");
    const language = LANGUAGE_FILES.has(target);
    for (const n of st.getNamedImports()) {
      const imported = n.getName();
      const local = n.getAliasNode()?.getText() ?? imported;
      if (language) scope.dsl.set(local, imported);
      else scope.imports.set(local, { file: target, name: imported });
    }
  }

  private moduleConst(scope: FileScope, d: import("ts-morph").VariableDeclaration): ModuleConst {
    const init = d.getInitializer();
    if (!init) fail("NGP1029", span(d));
    const declared = d.getTypeNode();
    if (Node.isArrayLiteralExpression(init)) {
      const elem = declared && Node.isArrayTypeNode(declared) ? this.scalarName(scope, declared.getElementTypeNode()) : undefined;
      const elements = init.getElements();
      const entries = elements.map((e) => this.expr(scope, e, new Set()));
      if (entries.some(isStandIn)) return REJECTED; // already reported
      const values = entries.map((lit, i) => {
        if (lit.k !== "lit" || typeof lit.v !== "number") fail("NGP1011", span(elements[i]!), "table entries must be numeric literals");
        return lit.v;
      });
      const inferred: Scalar = elem ?? (values.some((v) => !Number.isInteger(v)) ? "f32" : values.some((v) => v > 0x7fffffff) ? "u32" : "i32");
      return { kind: "table", elem: inferred, values: inferred === "f32" ? values.map(Math.fround) : values };
    }
    const e = this.expr(scope, init, new Set());
    if (isStandIn(e)) return REJECTED;
    if (e.k !== "lit") fail("NGP1011", span(init), "module constants are literals");
    const ty = declared ? this.scalarName(scope, declared) : e.ty;
    const fits = ty === e.ty || (e.abstract && (ty === "u32" ? (e.v as number) >= 0 : ty === "i32" && (e.v as number) <= 0x7fffffff));
    if (!fits) fail("NGP1019", span(init), `a ${e.abstract ? "integer" : e.ty} literal for a ${ty} constant`);
    return { kind: "scalar", v: e.v, ty, abstract: !declared && (e.abstract ?? false) };
  }

  // ---- functions ------------------------------------------------------------------------------

  /**
   * Lower function `name` of `scope` (once), returning its IR. A rejected parameter or return type
   * becomes UNKNOWN and the body is still lowered, so its own mistakes are reported too.
   */
  private func(scope: FileScope, name: string): Func {
    const key = `${scope.sf.getFilePath()}#${name}`;
    const done = this.funcs.get(key);
    if (done) return done;
    const decl = scope.functions.get(name)!;
    const kernel = isKernel(decl);
    const params: Param[] = decl.getParameters().map((p) => {
      const ty = this.sink.guard(() => {
        const tn = p.getTypeNode();
        if (!Node.isIdentifier(p.getNameNode())) fail("NGP1016", span(p), "destructuring", "take the value as a plain parameter");
        if (!tn) fail("NGP1017", span(p), `parameter '${p.getName()}' needs a type annotation`);
        if (p.hasQuestionToken() || p.getInitializer()) fail("NGP1017", span(p), "optional and default parameters");
        declared(p.getName(), p.getNameNode());
        return this.type(scope, tn);
      });
      return { name: p.getName(), ty: ty ?? UNKNOWN, span: span(p) };
    });
    const retNode = decl.getReturnTypeNode();
    const ret: Type = retNode ? (this.sink.guard(() => this.type(scope, retNode)) ?? UNKNOWN) : { k: "void" };
    const body = decl.getBody();
    if (!body || !Node.isBlock(body)) this.sink.report("NGP1016", span(decl), "a function needs a body");
    const fn: Func = {
      key, name, params, ret, kernel, span: span(decl.getNameNode() ?? decl), body: [],
      schedule: this.sink.guard(() => scheduleOf(decl)),
      block: this.sink.guard(() => blockOf(decl)),
      adjoints: this.sink.guard(() => adjointsOf(decl)),
    };
    this.lowering.push(key);
    if (body && Node.isBlock(body)) fn.body = this.block(scope, body.getStatements(), new Set(params.map((p) => p.name)));
    this.lowering.pop();
    this.funcs.set(key, fn);
    const grad = this.sink.guard(() => gradTagOf(decl));
    if (grad) this.sink.guard(() => (fn.grad = { key: this.derivative(scope, fn, grad.name, grad.span).key, span: grad.span }));
    return fn;
  }

  // ---- types ----------------------------------------------------------------------------------

  private type(scope: FileScope, tn: TypeNode): Type {
    if (tn.getKind() === SyntaxKind.AnyKeyword) fail("NGP1012", span(tn));
    if (tn.getKind() === SyntaxKind.VoidKeyword) return { k: "void" };
    if (Node.isArrayTypeNode(tn)) return { k: "array", elem: this.scalarName(scope, tn.getElementTypeNode()) };
    if (Node.isTypeReference(tn)) {
      const name = scope.dsl.get(tn.getTypeName().getText());
      const args = tn.getTypeArguments();
      if (name === "Buf" && args.length === 1) {
        if (scope.dsl.get(args[0]!.getText()) === "Float") return { k: "buf", elem: "Float" };
        const elem = this.elemName(scope, args[0]!);
        if (elem === "bool") fail("NGP1017", span(args[0]!), "Buf<bool>", "store flags in a Buf<u32> (0 or 1)");
        return { k: "buf", elem };
      }
      if (name === "Const" && args.length === 1) return { k: "config", cfg: this.configType(scope, args[0]!) };
      if (name === "Tile" || name === "Tiles") return { k: name === "Tile" ? "tile" : "tiles" };
    }
    return { k: "scalar", s: this.scalarName(scope, tn) };
  }

  private elemName(scope: FileScope, tn: TypeNode): Elem {
    if (tn.getKind() === SyntaxKind.AnyKeyword) fail("NGP1012", span(tn));
    const name = Node.isTypeReference(tn) ? scope.dsl.get(tn.getTypeName().getText()) : undefined;
    if (name && SCALAR_NAMES.has(name)) return name as Elem;
    if (tn.getKind() === SyntaxKind.BooleanKeyword) return "bool";
    const text = tn.getText();
    const hint = tn.getKind() === SyntaxKind.NumberKeyword
      ? "`number` is ambiguous: use f32, i32 or u32"
      : SCALAR_NAMES.has(text) ? `import it: import { type ${text} } from "<path to>/dsl/index.ts"` : undefined;
    fail("NGP1017", span(tn), `'${text}'`, hint);
  }

  private scalarName(scope: FileScope, tn: TypeNode): Scalar {
    const e = this.elemName(scope, tn);
    if (e === "f16") fail("NGP1017", span(tn), "f16 is a storage type", "use Buf<f16> for storage; values are f32");
    return e;
  }

  private configType(scope: FileScope, tn: TypeNode): ConfigType {
    const name = tn.getText();
    const { scope: owner, node } = this.findType(scope, name, tn);
    const fields: ConfigType["fields"] = new Map();
    if (Node.isInterfaceDeclaration(node) && node.getExtends().length) fail("NGP1017", span(node), `config interface '${name}' extends another`, "declare all fields in one interface");
    const members = Node.isInterfaceDeclaration(node)
      ? node.getProperties()
      : Node.isTypeAliasDeclaration(node) && Node.isTypeLiteral(node.getTypeNodeOrThrow())
        ? node.getTypeNodeOrThrow().asKindOrThrow(SyntaxKind.TypeLiteral).getProperties()
        : fail("NGP1017", span(tn), `'${name}' must be an interface or object type`);
    for (const m of members) {
      const ftn = m.getTypeNode();
      if (!ftn) fail("NGP1017", span(m), `config field '${m.getName()}' needs a type`);
      const inner = Node.isTypeOperatorTypeNode(ftn) ? ftn.getTypeNode() : ftn; // readonly T[]
      if (Node.isArrayTypeNode(inner)) fields.set(m.getName(), { s: this.scalarName(owner, inner.getElementTypeNode()), list: true, span: span(m) });
      else fields.set(m.getName(), { s: this.scalarName(owner, inner), list: false, span: span(m) });
    }
    return { name, fields };
  }

  private findType(scope: FileScope, name: string, at: Node): { scope: FileScope; node: Node } {
    const local = scope.types.get(name);
    if (local) return { scope, node: local };
    const imp = scope.imports.get(name);
    if (imp) return this.findType(this.fileScope(imp.file), imp.name, at);
    fail("NGP1018", span(at), `type '${name}'`);
  }

  // ---- statements -----------------------------------------------------------------------------

  private block(scope: FileScope, stmts: Node[], outer: Set<string>): Stmt[] {
    const locals = new Set(outer);
    const out: Stmt[] = [];
    for (const st of stmts) this.sink.guard(() => out.push(...this.stmt(scope, st, locals)));
    return out;
  }

  private stmt(scope: FileScope, st: Node, locals: Set<string>): Stmt[] {
    const sp = span(st);
    if (Node.isVariableStatement(st)) {
      const kind = st.getDeclarationKind();
      if (kind === "var") this.sink.report("NGP1016", sp, "`var`", "use let or const"); // then read as `let`
      // A rejected declaration still declares its name, bound to a stand-in, so its uses do not cascade.
      return st.getDeclarations().flatMap((d): Stmt[] => {
        const mutable = kind !== "const";
        const ok = this.sink.guard(() => this.localDecl(scope, d, mutable, locals));
        if (ok) return [ok];
        const n = d.getNameNode();
        const names = Node.isIdentifier(n) ? [n.getText()] : n.getDescendantsOfKind(SyntaxKind.BindingElement).map((b) => b.getName());
        return names.map((name) => (locals.add(name), { k: "let", name, mutable, init: standIn(span(d)), span: span(d) }));
      });
    }
    if (Node.isExpressionStatement(st)) return [this.exprStmt(scope, st.getExpression(), locals)];
    if (Node.isIfStatement(st)) {
      const els = st.getElseStatement();
      return [{
        k: "if", cond: this.expr(scope, st.getExpression(), locals), span: sp,
        then: this.body(scope, st.getThenStatement(), locals),
        else: els ? this.body(scope, els, locals) : [],
      }];
    }
    if (Node.isForStatement(st)) return [this.forStmt(scope, st, locals)];
    if (Node.isBlock(st)) return [{ k: "block", body: this.block(scope, st.getStatements(), locals), span: sp }];
    if (Node.isReturnStatement(st)) {
      const v = st.getExpression();
      return [{ k: "return", value: v ? this.expr(scope, v, locals) : undefined, span: sp }];
    }
    if (Node.isBreakStatement(st) || Node.isContinueStatement(st)) {
      if (st.getLabel()) fail("NGP1016", sp, "labelled break/continue");
      return [{ k: Node.isBreakStatement(st) ? "break" : "continue", span: sp }];
    }
    if (Node.isEmptyStatement(st)) return [];
    if (Node.isFunctionDeclaration(st)) fail("NGP1006", sp, "nested function declaration");
    if (Node.isClassDeclaration(st)) fail("NGP1005", sp);
    const hints: Partial<Record<SyntaxKind, string>> = {
      [SyntaxKind.WhileStatement]: "use a for loop with a bound",
      [SyntaxKind.DoStatement]: "use a for loop with a bound",
      [SyntaxKind.SwitchStatement]: "use if / else if",
      [SyntaxKind.ForOfStatement]: "use an indexed for loop",
      [SyntaxKind.ForInStatement]: "use an indexed for loop",
      [SyntaxKind.ThrowStatement]: "kernels cannot throw; write an error flag into a buffer",
      [SyntaxKind.TryStatement]: "kernels cannot throw",
    };
    fail("NGP1016", sp, `'${st.getKindName()}'`, hints[st.getKind()]);
  }

  private localDecl(scope: FileScope, d: import("ts-morph").VariableDeclaration, mutable: boolean, locals: Set<string>): Stmt {
    const init = d.getInitializer();
    if (!Node.isIdentifier(d.getNameNode())) fail("NGP1016", span(d), "destructuring");
    if (!init) fail("NGP1029", span(d));
    const name = declared(d.getName(), d.getNameNode());
    const arr = this.localArrayDecl(scope, d.getTypeNode(), init, locals);
    locals.add(name);
    if (arr) return { k: "array", name, elem: arr.elem, size: arr.size, span: span(d) };
    const tn = d.getTypeNode();
    const tile = tn ? this.type(scope, tn) : undefined;
    if (tile?.k === "tile" || tile?.k === "tiles") return { k: "let", name, mutable, tile: tile.k, init: this.expr(scope, init, locals), span: span(d) };
    const ty = tn ? this.scalarName(scope, tn) : undefined;
    return { k: "let", name, mutable, ty, init: this.expr(scope, init, locals), span: span(d) };
  }

  /** Bodies of if/for: a block or a single statement, in a nested scope. */
  private body(scope: FileScope, st: Node, locals: Set<string>): Stmt[] {
    return Node.isBlock(st) ? this.block(scope, st.getStatements(), locals) : this.block(scope, [st], locals);
  }

  private localArrayDecl(scope: FileScope, tn: TypeNode | undefined, init: Node, locals: Set<string>): { elem: Scalar; size: Expr } | undefined {
    if (!Node.isCallExpression(init) || formOf(scope.dsl.get(init.getExpression().getText()))?.k !== "array") return undefined;
    const targs = init.getTypeArguments();
    const elemNode = targs[0] ?? (tn && Node.isArrayTypeNode(tn) ? tn.getElementTypeNode() : undefined);
    if (!elemNode) fail("NGP1017", span(init), "localArray needs an element type", "write localArray<f32>(size)");
    const args = init.getArguments();
    if (args.length !== 1) fail("NGP1021", span(init), "localArray takes one argument, the size");
    return { elem: this.scalarName(scope, elemNode as TypeNode), size: this.expr(scope, args[0]!, locals) };
  }

  private exprStmt(scope: FileScope, e: Node, locals: Set<string>): Stmt {
    const sp = span(e);
    if (Node.isBinaryExpression(e)) {
      const op = ASSIGN_OPS[e.getOperatorToken().getKind()];
      if (op) return { k: "assign", target: this.lvalue(scope, e.getLeft(), locals), op, value: this.expr(scope, e.getRight(), locals), span: sp };
    }
    if (Node.isPostfixUnaryExpression(e) || Node.isPrefixUnaryExpression(e)) {
      const tok = e.getOperatorToken();
      if (tok === SyntaxKind.PlusPlusToken || tok === SyntaxKind.MinusMinusToken) {
        const one: Expr = { k: "lit", v: 1, ty: "i32", abstract: true, span: sp };
        return { k: "assign", target: this.lvalue(scope, e.getOperand(), locals), op: tok === SyntaxKind.PlusPlusToken ? "+=" : "-=", value: one, span: sp };
      }
    }
    if (Node.isCallExpression(e)) return { k: "expr", e: this.lowerExpr(scope, e, locals), span: sp }; // rejected: no statement
    if (Node.isParenthesizedExpression(e)) return this.exprStmt(scope, e.getExpression(), locals);
    this.lowerExpr(scope, e, locals); // report what is unsupported in it first
    fail("NGP1016", sp, "an expression statement without effect", "statements are assignments, ++/--, or calls");
  }

  private lvalue(scope: FileScope, e: Node, locals: Set<string>): Expr {
    const target = this.expr(scope, e, locals);
    if (target.k === "var" || (target.k === "index" && target.base.k === "var")) return target;
    if (target.k === "field" || target.k === "lit" || target.k === "table" || target.k === "index") fail("NGP1014", span(e), `'${e.getText()}'`);
    fail("NGP1016", span(e), "assignment target", "assign to a variable or an element of a buffer/local array");
  }

  /** A rejected loop header is reported and the body still lowered, with the loop variable's type unknown. */
  private forStmt(scope: FileScope, st: import("ts-morph").ForStatement, outer: Set<string>): Stmt {
    const sp = span(st);
    const locals = new Set(outer);
    const loop: Extract<Stmt, { k: "for" }> = { k: "for", v: STAND_IN, start: standIn(sp), cmp: "<", end: standIn(sp), step: standIn(sp), body: [], span: sp };
    this.sink.guard(() => this.forHeader(scope, st, outer, locals, loop));
    loop.body = this.body(scope, st.getStatement(), locals);
    return loop;
  }

  /** Fill in `loop` from the header, part by part (what is left is a stand-in if a part is rejected). */
  private forHeader(scope: FileScope, st: import("ts-morph").ForStatement, outer: Set<string>, locals: Set<string>, loop: Extract<Stmt, { k: "for" }>): void {
    const bad = (n: Node | undefined) => fail("NGP1031", n ? span(n) : loop.span);
    const init = st.getInitializer();
    if (!init || !Node.isVariableDeclarationList(init) || init.getDeclarations().length !== 1) return bad(init);
    const decl = init.getDeclarations()[0]!;
    const v = (loop.v = decl.getName());
    locals.add(v);
    if (init.getDeclarationKind() !== "let") return bad(init);
    declared(v, decl.getNameNode());
    const startNode = decl.getInitializer();
    if (!startNode) return bad(decl);
    loop.start = this.expr(scope, startNode, outer);

    const cond = st.getCondition();
    if (!cond || !Node.isBinaryExpression(cond) || cond.getLeft().getText() !== v) return bad(cond);
    const cmp = BIN_OPS[cond.getOperatorToken().getKind()];
    if (cmp !== "<" && cmp !== "<=" && cmp !== ">" && cmp !== ">=") return bad(cond);
    loop.cmp = cmp;
    loop.end = this.expr(scope, cond.getRight(), locals);

    const inc = st.getIncrementor();
    let step: Expr | undefined;
    if (inc && (Node.isPostfixUnaryExpression(inc) || Node.isPrefixUnaryExpression(inc)) && inc.getOperand().getText() === v) {
      const tok = inc.getOperatorToken();
      if (tok === SyntaxKind.PlusPlusToken || tok === SyntaxKind.MinusMinusToken)
        step = { k: "lit", v: tok === SyntaxKind.PlusPlusToken ? 1 : -1, ty: "i32", abstract: true, span: span(inc) };
    } else if (inc && Node.isBinaryExpression(inc) && inc.getLeft().getText() === v) {
      const op = inc.getOperatorToken().getKind();
      const amount = this.expr(scope, inc.getRight(), locals);
      if (op === SyntaxKind.PlusEqualsToken) step = amount;
      else if (op === SyntaxKind.MinusEqualsToken) step = { k: "un", op: "-", a: amount, span: span(inc) };
    }
    if (!step) return bad(inc);
    loop.step = step;
    const vtn = decl.getTypeNode();
    if (vtn) loop.vty = this.scalarName(scope, vtn);
  }

  // ---- expressions ----------------------------------------------------------------------------

  /** Lower `e`; a rejected expression is reported and replaced by a stand-in, so the rest is still checked. */
  private expr(scope: FileScope, e: Node, locals: Set<string>): Expr {
    return this.sink.guard(() => this.lowerExpr(scope, e, locals)) ?? standIn(span(e));
  }

  private lowerExpr(scope: FileScope, e: Node, locals: Set<string>): Expr {
    const sp = span(e);
    const sub = (n: Node) => this.expr(scope, n, locals);
    if (Node.isParenthesizedExpression(e) || Node.isNonNullExpression(e)) return sub(e.getExpression());
    if (Node.isNumericLiteral(e)) return numericLiteral(e.getText(), e.getLiteralValue(), sp);
    if (Node.isTrueLiteral(e) || Node.isFalseLiteral(e)) return { k: "lit", v: Node.isTrueLiteral(e), ty: "bool", span: sp };
    if (Node.isIdentifier(e)) return this.identifier(scope, e.getText(), sp, locals);
    if (Node.isPrefixUnaryExpression(e)) {
      const tok = e.getOperatorToken();
      const operand = e.getOperand();
      if (tok === SyntaxKind.MinusToken && Node.isNumericLiteral(operand)) {
        const lit = numericLiteral(operand.getText(), -operand.getLiteralValue(), sp);
        return lit;
      }
      const op = tok === SyntaxKind.MinusToken ? "-" : tok === SyntaxKind.ExclamationToken ? "!" : tok === SyntaxKind.TildeToken ? "~" : undefined;
      if (!op) fail("NGP1015", sp, `prefix '${e.getText().slice(0, 2).replace(/[^+\-]/g, "")}'`, "write x = x + 1 as its own statement; unary + is not needed");
      return { k: "un", op, a: sub(operand), span: sp };
    }
    if (Node.isPostfixUnaryExpression(e)) fail("NGP1015", sp, "++/-- inside an expression", "use ++/-- as a statement of its own");
    if (Node.isBinaryExpression(e)) {
      const kind = e.getOperatorToken().getKind();
      if (kind === SyntaxKind.QuestionQuestionToken) fail("NGP1002", sp);
      if (ASSIGN_OPS[kind] || kind === SyntaxKind.QuestionQuestionEqualsToken) fail("NGP1015", sp, "assignment inside an expression", "assign in a statement of its own");
      const refused = REFUSED_OPS[kind];
      if (refused) fail("NGP1015", span(e.getOperatorToken()), `'${e.getOperatorToken().getText()}'`, refused);
      const op = BIN_OPS[kind];
      if (!op) fail("NGP1015", span(e.getOperatorToken()), `'${e.getOperatorToken().getText()}'`);
      return { k: "bin", op, a: sub(e.getLeft()), b: sub(e.getRight()), span: sp };
    }
    if (Node.isConditionalExpression(e)) fail("NGP1001", sp);
    if (Node.isCallExpression(e)) return this.call(scope, e, locals);
    if (Node.isElementAccessExpression(e)) {
      if (e.hasQuestionDotToken()) fail("NGP1002", sp);
      return { k: "index", base: sub(e.getExpression()), index: sub(e.getArgumentExpressionOrThrow()), span: sp };
    }
    if (Node.isPropertyAccessExpression(e)) {
      if (e.hasQuestionDotToken()) fail("NGP1002", sp);
      if (e.getExpression().getText() === "Math") fail("NGP1010", sp, `'${e.getText()}'`, `use ${e.getName()}() from the dsl, which has the same meaning on every backend`);
      return { k: "field", base: sub(e.getExpression()), name: e.getName(), span: sp };
    }
    if (Node.isStringLiteral(e) || Node.isNoSubstitutionTemplateLiteral(e) || Node.isTemplateExpression(e)) fail("NGP1003", sp);
    if (Node.isObjectLiteralExpression(e) || Node.isArrayLiteralExpression(e)) fail("NGP1004", sp);
    if (Node.isArrowFunction(e) || Node.isFunctionExpression(e)) fail("NGP1006", sp);
    if (Node.isAsExpression(e) || Node.isTypeAssertion(e) || Node.isSatisfiesExpression(e))
      fail("NGP1015", sp, "type assertion", "convert with f32(x), i32(x) or u32(x)");
    if (Node.isNewExpression(e)) fail("NGP1033", sp, "`new` (dynamic allocation)", "use localArray<T>(size) with a compile-time size");
    if (e.getKind() === SyntaxKind.NullKeyword || (Node.isIdentifier(e) && e.getText() === "undefined")) fail("NGP1002", sp);
    fail("NGP1033", sp, `'${e.getKindName()}'`);
  }

  private identifier(scope: FileScope, name: string, sp: Span, locals: Set<string>): Expr {
    if (locals.has(name)) return { k: "var", name, span: sp };
    const c = this.moduleConstant(scope, name);
    if (c?.kind === "scalar") return { k: "lit", v: c.v, ty: c.ty, abstract: c.abstract, span: sp };
    if (c?.kind === "table") return { k: "table", id: name, elem: c.elem, values: c.values, span: sp };
    if (c?.kind === "rejected") return standIn(sp); // its declaration was reported
    if (name === "undefined") fail("NGP1002", sp);
    if (name === "Infinity" || name === "NaN") fail("NGP1018", sp, `'${name}'`, "write it as a computation, e.g. 1.0 / 0.0");
    fail("NGP1018", sp, `'${name}'`);
  }

  private moduleConstant(scope: FileScope, name: string): ModuleConst | undefined {
    const local = scope.consts.get(name);
    if (local) return local;
    const imp = scope.imports.get(name);
    return imp ? this.moduleConstant(this.fileScope(imp.file), imp.name) : undefined;
  }

  private call(scope: FileScope, e: import("ts-morph").CallExpression, locals: Set<string>): Expr {
    const sp = span(e);
    const callee = e.getExpression();
    const args = () => e.getArguments().map((a) => this.expr(scope, a, locals));
    if (!Node.isIdentifier(callee)) {
      if (Node.isPropertyAccessExpression(callee) && callee.getExpression().getText() === "Math")
        fail("NGP1010", span(callee), `'${callee.getText()}'`, `use ${callee.getName()}() from the dsl, which has the same meaning on every backend`);
      fail("NGP1010", span(callee), `'${callee.getText()}'`, "only plain function calls are supported");
    }
    const name = callee.getText();
    if (!locals.has(name)) {
      const dslName = scope.dsl.get(name);
      const intrinsic = dslName === undefined ? undefined : lookupIntrinsic(dslName);
      if (intrinsic?.tile?.form === "map") return { k: "call", fn: dslName!, kind: "intrinsic", args: this.tileMapArgs(scope, e, locals), span: sp };
      if (intrinsic) return { k: "call", fn: dslName!, kind: "intrinsic", args: args(), span: sp };
      if (formOf(dslName)?.k === "array") fail("NGP1004", sp, "localArray() outside a declaration", "write `const a = localArray<f32>(n);`");
      const helper = this.resolveFunction(scope, name, sp);
      if (helper) {
        if (helper.kernel) fail("NGP1021", sp, `'${name}' is a kernel`, "kernels are launched from the host; move the shared code into a helper");
        return { k: "call", fn: helper.key, kind: "helper", args: args(), span: sp };
      }
    }
    fail("NGP1010", span(callee), `'${name}'`);
  }

  /** tileMap(fn, ...): the first argument names a helper (the elementwise function). */
  private tileMapArgs(scope: FileScope, e: import("ts-morph").CallExpression, locals: Set<string>): Expr[] {
    const [first, ...rest] = e.getArguments();
    if (!first) fail("NGP1021", span(e), "tileMap needs a helper function and its arguments", "write tileMap(fn, tile, ...)");
    const name = first.getText();
    const helper = Node.isIdentifier(first) && !locals.has(name) ? this.resolveFunction(scope, name, span(first)) : undefined;
    if (!helper || helper.kernel) fail("NGP1021", span(first), `tileMap's first argument must name a helper function, got '${name}'`, "pass a function declared in a kernel file: tileMap(relu, h)");
    return [{ k: "fnref", fn: helper.key, span: span(first) }, ...rest.map((a) => this.expr(scope, a, locals))];
  }

  /**
   * The helper named by `fn`'s `@grad` tag: fn's parameters, then the adjoint of its f32 result,
   * then a Buf<f32> (the gradient) per buffer parameter of fn; it returns nothing.
   */
  private derivative(scope: FileScope, fn: Func, name: string, sp: Span): Func {
    const g = this.resolveFunction(scope, name, sp) ?? fail("NGP1058", sp, `'${name}' is not a function of this file or imported into it`);
    const bufs = fn.params.filter((p) => p.ty.k === "buf");
    const want = [...fn.params.map((p) => p.ty), { k: "scalar", s: "f32" }, ...bufs.map(() => ({ k: "buf", elem: "f32" }))];
    const same = (a: Type, b: Type) => JSON.stringify(a, (k, v) => (k === "span" || k === "cfg" ? undefined : v)) === JSON.stringify(b, (k, v) => (k === "span" || k === "cfg" ? undefined : v));
    const expected = `${fn.params.map((p) => p.name).join(", ")}, adj: f32${bufs.map((p) => `, d_${p.name}: Buf<f32>`).join("")}`;
    if (fn.kernel || fn.ret.k !== "scalar" || fn.ret.s !== "f32") fail("NGP1058", sp, `'${fn.name}' must be a helper returning f32 to declare a derivative`);
    if (g.ret.k !== "void" || g.params.length !== want.length || g.params.some((p, i) => !same(p.ty, want[i] as Type)))
      fail("NGP1058", sp, `'${name}' must take (${expected}) and return void`);
    return g;
  }

  private resolveFunction(scope: FileScope, name: string, sp: Span): Func | undefined {
    const imp = scope.imports.get(name);
    let [owner, fname] = scope.functions.has(name) ? [scope, name] : imp ? [this.fileScope(imp.file), imp.name] : [scope, ""];
    // A part the variant replaces: its function, wherever the part is called (but in the variant).
    const decl = owner.functions.get(fname);
    if (this.variant && decl && isReplaceable(decl) && scope.sf.getFilePath() !== this.variant) {
      const variant = this.fileScope(this.variant);
      if (variant.functions.has(fname)) owner = variant;
    }
    if (!owner.functions.has(fname)) return undefined;
    const key = `${owner.sf.getFilePath()}#${fname}`;
    const cycle = this.lowering.indexOf(key);
    if (cycle >= 0) {
      const path = [...this.lowering.slice(cycle), key].map((k) => `'${k.slice(k.indexOf("#") + 1)}'`).join(" -> ");
      fail("NGP1007", sp, path);
    }
    return this.func(owner, fname);
  }
}

/** A variant's `requires = { dims: 4, levelsMultipleOf: 4 }`: known fields, integer literals in range. */
function requiresOf(d: import("ts-morph").VariableDeclaration): VariantNeeds {
  const init = d.getInitializer();
  if (!init || !Node.isObjectLiteralExpression(init)) fail("NGP1059", span(init ?? d), "it must be an object literal");
  const needs: VariantNeeds = {};
  for (const p of init.getProperties()) {
    const name = Node.isPropertyAssignment(p) ? p.getName() : undefined;
    if (!Node.isPropertyAssignment(p) || !(p.getName() in NEEDS)) {
      const near = name && nearest(name, Object.keys(NEEDS));
      fail("NGP1059", span(p), `unknown field '${name ?? p.getText()}'${near ? ` (did you mean ${near}?)` : ""}`);
    }
    const field = p.getName() as keyof VariantNeeds;
    const text = p.getInitializer()?.getText();
    const { min, max } = NEEDS[field];
    const value = Number(text);
    if (!(Number.isInteger(value) && value >= min && value <= max)) fail("NGP1059", span(p), `${field}: ${text} (allowed: an integer literal from ${min} to ${max})`);
    needs[field] = value;
  }
  return needs;
}

function scheduleOf(decl: FunctionDeclaration): Schedule | undefined {
  for (const doc of decl.getJsDocs())
    for (const tag of doc.getTags()) {
      if (tag.getTagName() !== "schedule") continue;
      const value = tag.getCommentText()?.trim();
      if (value !== "split" && value !== "owner" && value !== "lanes") fail("NGP1034", span(tag), `@schedule ${value ?? ""}`, "write @schedule split, owner or lanes");
      return value;
    }
  return undefined;
}

/** `@block <rows>`: rows per block, a literal or the name of a configuration field. */
function blockOf(decl: FunctionDeclaration): number | string | undefined {
  for (const doc of decl.getJsDocs())
    for (const tag of doc.getTags()) {
      if (tag.getTagName() !== "block") continue;
      const value = tag.getCommentText()?.trim() ?? "";
      if (/^[0-9]+$/.test(value)) return Number(value);
      if (/^[A-Za-z_]\w*$/.test(value)) return value;
      fail("NGP1040", span(tag), `@block ${value}`, "write @block 64 or @block <field> (a field of the kernel's Const<> configuration)");
    }
  return undefined;
}

/** `@grad <name>`: the helper that is this helper's derivative. */
function gradTagOf(decl: FunctionDeclaration): { name: string; span: Span } | undefined {
  for (const doc of decl.getJsDocs())
    for (const tag of doc.getTags()) {
      if (tag.getTagName() !== "grad") continue;
      const name = (tag.getCommentText() ?? "").trim();
      if (!/^[A-Za-z_]\w*$/.test(name)) fail("NGP1058", span(tag), `@grad ${name}`, "write @grad <helper>, naming the function that is this helper's derivative");
      return { name, span: span(tag) };
    }
  return undefined;
}

/** `@adjoint <name> <buffer>[,<buffer>...] [owner] [outputs]`: a kernel derived by automatic differentiation. */
function adjointsOf(decl: FunctionDeclaration): Func["adjoints"] {
  const out: NonNullable<Func["adjoints"]> = [];
  for (const doc of decl.getJsDocs())
    for (const tag of doc.getTags()) {
      if (tag.getTagName() !== "adjoint") continue;
      const words = (tag.getCommentText() ?? "").trim().split(/\s+/);
      const [name, wrt, ...modes] = words;
      if (!name || !/^[A-Za-z_]\w*$/.test(name) || !wrt || modes.some((m) => m !== "owner" && m !== "outputs") || new Set(modes).size < modes.length)
        fail("NGP1051", span(tag), `@adjoint ${words.join(" ")}`);
      out.push({ name, wrt: wrt.split(",").filter(Boolean), owner: modes.includes("owner"), outputs: modes.includes("outputs"), span: span(tag) });
    }
  return out.length ? out : undefined;
}

function hasTag(decl: FunctionDeclaration, tag: string): boolean {
  return decl.getJsDocs().some((d) => d.getTags().some((t) => t.getTagName() === tag));
}

function isKernel(decl: FunctionDeclaration): boolean {
  return hasTag(decl, "kernel");
}

/** `@replaceable`: a variant (ParseOptions.variant) may replace the function. */
function isReplaceable(decl: FunctionDeclaration): boolean {
  return hasTag(decl, "replaceable");
}

function numericLiteral(text: string, value: number, sp: Span): Expr {
  const isFloat = /^-?[0-9]*\.[0-9]*([eE][-+]?[0-9]+)?$|^-?[0-9]+[eE][-+]?[0-9]+$/.test(text.replace(/_/g, ""));
  if (isFloat) return { k: "lit", v: Math.fround(value), ty: "f32", span: sp };
  if (!Number.isInteger(value) || value < -0x80000000 || value > 0xffffffff) fail("NGP1023", sp, text);
  return { k: "lit", v: value, ty: value > 0x7fffffff ? "u32" : "i32", abstract: true, span: sp };
}

function resolveModule(fromDir: string, spec: string): string | undefined {
  if (spec === "ngp-kernels/dsl" || spec === "ngp-kernels") return resolve(DSL_DIR, "index.ts");
  // The project's own kernel files, e.g. "ngp-kernels/dsl/kernels/lookup.ts" from a variant.
  if (spec.startsWith("ngp-kernels/")) return resolveModule(resolve(DSL_DIR, ".."), `./${spec.slice("ngp-kernels/".length)}`);
  if (!spec.startsWith(".") && !spec.startsWith("/")) return undefined;
  const base = resolve(fromDir, spec);
  for (const candidate of [base, `${base}.ts`, resolve(base, "index.ts")]) if (candidate.endsWith(".ts") && existsSync(candidate)) return candidate;
  return undefined;
}

export function span(node: Node): Span {
  const sf = node.getSourceFile();
  const start = node.getStart();
  const { line, column } = sf.getLineAndColumnAtPos(start);
  return { file: sf.getFilePath(), start, end: node.getEnd(), line, col: column };
}
