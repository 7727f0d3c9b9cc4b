// The real bundles: esbuild builds every widget into a temp dir; each bundle must be a
// self-contained ESM module (no imports left) whose default export renders and cleans up,
// and THIRD_PARTY_NOTICES.md next to them must name every npm package the bundles contain.
// esbuild refuses to run inside jsdom (its TextEncoder invariant), so the build runs in a
// child node process exactly as `npm run build` does.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NOTICES_FILE, packageInfo, packageOf, renderNotices } from "../build.mjs";
import { FakeModel } from "./fake_model.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const JS_DIR = join(HERE, "..");
// Inside the project (node_modules is gitignored): vite only loads modules under its root.
mkdirSync(join(JS_DIR, "node_modules", ".cache"), { recursive: true });
const tmp = mkdtempSync(join(JS_DIR, "node_modules", ".cache", "rtw-build-"));
const outdir = join(tmp, "static");
const metafilePath = join(tmp, "meta.json");
const NAMES = ["chat", "collab_text", "connection_status", "gateway_monitor", "inspector", "live_chart", "presence_bar", "todo_list"];

beforeAll(() => {
  execFileSync(process.execPath, [join(JS_DIR, "build.mjs"), outdir, "--metafile", metafilePath], {
    stdio: "pipe",
  });
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("build", () => {
  it("writes one bundle per widget and the notice file, nothing else", () => {
    expect(readdirSync(outdir).sort()).toEqual([NOTICES_FILE, ...NAMES.map((n) => `${n}.js`)].sort());
  });

  it("bundles every widget as standalone ESM that renders and cleans up", async () => {
    for (const name of NAMES) {
      const file = join(outdir, `${name}.js`);
      const code = readFileSync(file, "utf8");
      expect(code).not.toMatch(/^\s*import\s/m);
      expect(code.split("\n", 1)[0]).toContain(NOTICES_FILE); // the banner points to the licences
      const mod = await import(/* @vite-ignore */ pathToFileURL(file).href);
      expect(typeof mod.default.render).toBe("function");
      const model = new FakeModel({});
      const el = document.createElement("div");
      const cleanup = mod.default.render({ model, el });
      expect(el.querySelector(`.rtw-widget.rtw-${basename(file, ".js")}`)).not.toBeNull();
      cleanup();
      expect(model.listenerCount()).toBe(0);
      expect(el.childElementCount).toBe(0);
    }
  }, 30_000);

  it("lists every npm package in the bundles with its version and full licence text", () => {
    // From esbuild's own metafile, read here with a plain regex (not build.mjs' packageOf).
    const meta = JSON.parse(readFileSync(metafilePath, "utf8"));
    const bundled = new Set();
    for (const { inputs } of Object.values(meta.outputs)) {
      for (const input of Object.keys(inputs)) {
        const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\/[^]*$/);
        if (match) bundled.add(match[1]);
      }
    }
    // What collab_text is made of, at least (guards against a metafile that lists nothing).
    for (const name of ["yjs", "lib0", "@codemirror/state", "@codemirror/view", "y-codemirror.next"]) {
      expect(bundled).toContain(name);
    }
    const notices = readFileSync(join(outdir, NOTICES_FILE), "utf8");
    const headings = [...notices.matchAll(/^## (\S+) (\S+)$/gm)].map((m) => m[1]);
    expect(new Set(headings)).toEqual(bundled);
    for (const name of bundled) {
      const dir = join(JS_DIR, "node_modules", ...name.split("/"));
      const { version, license } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
      const section = notices.split(`\n## ${name} ${version}\n`)[1]?.split("\n## ")[0];
      expect(section, `${name} ${version} has no section`).toBeDefined();
      expect(section).toContain(`Licence: ${license}`);
      const licenseFile = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
      expect(section).toContain(readFileSync(join(dir, licenseFile), "utf8").trim());
      expect(notices).toContain(`| ${name} | ${version} | ${license} |`);
    }
  });
});

describe("notice helpers", () => {
  it("maps metafile inputs to packages: scoped, nested, own code", () => {
    expect(packageOf("node_modules/yjs/dist/yjs.mjs", "/p/js")).toEqual({
      name: "yjs",
      dir: "/p/js/node_modules/yjs",
    });
    expect(packageOf("node_modules/@codemirror/state/dist/index.js", "/p/js")).toEqual({
      name: "@codemirror/state",
      dir: "/p/js/node_modules/@codemirror/state",
    });
    expect(packageOf("node_modules/a/node_modules/b/index.js", "/p/js")).toEqual({
      name: "b",
      dir: "/p/js/node_modules/a/node_modules/b",
    });
    expect(packageOf("src/lib/intents.js", "/p/js")).toBeNull();
  });

  it("fails for a package without a licence file and fences texts holding backticks", () => {
    const dir = join(tmp, "fake-pkg");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "fake-pkg", version: "1.2.3", license: "MIT" }));
    expect(() => packageInfo(dir)).toThrow(/fake-pkg@1\.2\.3 .*no LICENSE file/);
    writeFileSync(join(dir, "LICENSE.md"), "MIT\n\n```\nnot the end\n```\n");
    const text = renderNotices(new Map([[dir, { name: "fake-pkg", bundles: new Set(["chat"]) }]]));
    expect(text).toContain("| fake-pkg | 1.2.3 | MIT | chat |");
    expect(text).toContain("````text\nMIT\n\n```\nnot the end\n```\n````");
  });
});
