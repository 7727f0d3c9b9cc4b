// The real bundles: esbuild builds every widget into a temp dir; each bundle must be a
// self-contained ESM module (no imports left) whose default export renders and cleans up.
// esbuild refuses to run inside jsdom (its TextEncoder invariant), so the build runs in a
// child node process exactly as `npm run build` does.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { FakeModel } from "./fake_model.js";

const HERE = dirname(fileURLToPath(import.meta.url));
// Inside the project (node_modules is gitignored): vite only loads modules under its root.
mkdirSync(join(HERE, "..", "node_modules", ".cache"), { recursive: true });
const outdir = mkdtempSync(join(HERE, "..", "node_modules", ".cache", "rtw-build-"));

afterAll(() => rmSync(outdir, { recursive: true, force: true }));

describe("build", () => {
  it("bundles every widget as standalone ESM that renders and cleans up", async () => {
    const script = join(HERE, "..", "build.mjs");
    execFileSync(process.execPath, [script, outdir], { stdio: "pipe" });
    const names = ["chat", "collab_text", "connection_status", "inspector", "live_chart", "presence_bar", "todo_list"];
    const files = readdirSync(outdir).sort().map((f) => join(outdir, f));
    expect(files.map((f) => basename(f))).toEqual(names.map((n) => `${n}.js`));
    for (const file of files) {
      const code = readFileSync(file, "utf8");
      expect(code).not.toMatch(/^\s*import\s/m);
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
});
