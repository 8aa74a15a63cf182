#!/usr/bin/env node
// solc-compatible command line over solc-js (the official compiler built to WebAssembly).
// Implements the subset py-solc-x, ape-solidity and crytic-compile (Slither) call:
//   --version
//   --standard-json [--base-path DIR] [--include-path DIR]... [--allow-paths ...]  (JSON on stdin)
//   --combined-json KEYS [options] FILE...
// Imports resolve from the base path and include paths only. Errors are reported inside
// the JSON with exit code 0, as native solc does. Output is written synchronously so a
// pipe receives all of it (process.stdout.write + process.exit truncates at 64 KiB).
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

function nativeVersion() {
  return solc.version().replace(".Emscripten.clang", ".Linux.g++");
}

function writeOut(text) {
  fs.writeSync(1, text);
}

function parseArgs(argv) {
  const opts = { basePath: null, includePaths: [], files: [], mode: null, combined: null, flags: {} };
  const valued = new Set(["--base-path", "--include-path", "--allow-paths", "--combined-json",
    "--evm-version", "--optimize-runs", "--output-dir", "-o"]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const takeValue = () => {
      if (a.includes("=")) return a.slice(a.indexOf("=") + 1);
      i += 1;
      return argv[i];
    };
    const name = a.includes("=") ? a.slice(0, a.indexOf("=")) : a;
    if (name === "--version") opts.mode = "version";
    else if (name === "--standard-json") opts.mode = "standard-json";
    else if (name === "--base-path") opts.basePath = takeValue();
    else if (name === "--include-path") opts.includePaths.push(takeValue());
    else if (name === "--combined-json") { opts.mode = opts.mode || "combined-json"; opts.combined = takeValue(); }
    else if (valued.has(name)) opts.flags[name] = takeValue();
    else if (a.startsWith("-")) opts.flags[name] = true;
    else if (a.includes("=")) continue; // remapping prefix=target (combined-json mode)
    else opts.files.push(a);
  }
  return opts;
}

function makeImportResolver(roots) {
  return function findImports(importPath) {
    for (const root of roots) {
      const candidate = path.resolve(root, importPath);
      if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) {
        return { contents: fs.readFileSync(candidate, "utf8") };
      }
    }
    return { error: `File not found in base path or include paths: ${importPath}` };
  };
}

function importRoots(opts) {
  const roots = [];
  if (opts.basePath) roots.push(opts.basePath);
  roots.push(...opts.includePaths);
  if (roots.length === 0) roots.push(process.cwd());
  return roots;
}

function standardJson(opts) {
  const input = fs.readFileSync(0, "utf8");
  let output;
  try {
    JSON.parse(input);
    output = solc.compile(input, { import: makeImportResolver(importRoots(opts)) });
  } catch (err) {
    output = JSON.stringify({ errors: [{ component: "general", severity: "error",
      type: "JSONError", message: String(err.message || err), formattedMessage: String(err.message || err) }] });
  }
  writeOut(output);
  return 0;
}

function combinedJson(opts) {
  const keys = (opts.combined || "abi,bin").split(",");
  const outputSelection = new Set(["abi", "evm.bytecode", "evm.deployedBytecode", "evm.bytecode.sourceMap",
    "evm.deployedBytecode.sourceMap", "userdoc", "devdoc", "metadata", "evm.methodIdentifiers"]);
  const sources = {};
  for (const f of opts.files) sources[f] = { content: fs.readFileSync(f, "utf8") };
  const settings = { outputSelection: { "*": { "*": [...outputSelection], "": ["ast"] } } };
  if (opts.flags["--evm-version"]) settings.evmVersion = opts.flags["--evm-version"];
  if (opts.flags["--optimize"]) settings.optimizer = { enabled: true, runs: Number(opts.flags["--optimize-runs"] || 200) };
  const roots = importRoots(opts);
  roots.push(process.cwd());
  const out = JSON.parse(solc.compile(JSON.stringify({ language: "Solidity", sources, settings }),
    { import: makeImportResolver(roots) }));
  const errors = (out.errors || []).filter((e) => e.severity === "error");
  for (const e of out.errors || []) process.stderr.write((e.formattedMessage || e.message) + "\n");
  if (errors.length) return 1;
  const contracts = {};
  for (const [file, byName] of Object.entries(out.contracts || {})) {
    for (const [name, c] of Object.entries(byName)) {
      const entry = {};
      for (const k of keys) {
        if (k === "abi") entry.abi = c.abi;
        else if (k === "bin") entry.bin = c.evm.bytecode.object;
        else if (k === "bin-runtime") entry["bin-runtime"] = c.evm.deployedBytecode.object;
        else if (k === "srcmap") entry.srcmap = c.evm.bytecode.sourceMap;
        else if (k === "srcmap-runtime") entry["srcmap-runtime"] = c.evm.deployedBytecode.sourceMap;
        else if (k === "userdoc") entry.userdoc = c.userdoc;
        else if (k === "devdoc") entry.devdoc = c.devdoc;
        else if (k === "hashes") entry.hashes = c.evm.methodIdentifiers;
        else if (k === "metadata") entry.metadata = c.metadata;
      }
      contracts[`${file}:${name}`] = entry;
    }
  }
  const sourceList = Object.keys(out.sources || {});
  const srcOut = {};
  for (const s of sourceList) srcOut[s] = { AST: out.sources[s].ast, id: out.sources[s].id };
  writeOut(JSON.stringify({ contracts, sourceList, sources: srcOut, version: nativeVersion() }));
  return 0;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.mode === "version") {
    writeOut(`solc, the solidity compiler commandline interface\nVersion: ${nativeVersion()}\n`);
    return 0;
  }
  if (opts.mode === "standard-json") return standardJson(opts);
  if (opts.mode === "combined-json") return combinedJson(opts);
  process.stderr.write("usage: solc --version | --standard-json [--base-path DIR] [--include-path DIR] | --combined-json KEYS FILE...\n");
  return 1;
}

process.exitCode = main();
