// The browser's chart series, for pytest: the real ChartSeries of js/src/live_chart.js (the code
// the LiveChart widget bundles) applied to the kernel's real window/append messages.
// Protocol: one JSON request a line on stdin, one JSON answer a line on stdout.
//   {"view": id, "msg": content, "buffers": [base64 x, base64 y]}  -> apply to view `id`
//     (created on first use); buffers arrive as DataViews over their own ArrayBuffer, as
//     Jupyter delivers them to a widget.
//   answer: {"outcome", "x", "y" (base64 float64 of xs()/ys(), tail included), "kept"
//     (points without the tail), "tail" (bool), "seq", "hasWindow", "lastError"}
//   a request that throws answers {"exception": message}.
import { createInterface } from "node:readline";
import { ChartSeries } from "../../js/src/live_chart.js";

const views = new Map();
const fromB64 = (s) => {
  const bytes = Buffer.from(s, "base64");
  const own = new ArrayBuffer(bytes.length); // a fresh buffer, offset 0, like a comm message's
  new Uint8Array(own).set(bytes);
  return new DataView(own);
};
const toB64 = (floats) => Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength).toString("base64");

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  let answer;
  try {
    const request = JSON.parse(line);
    let series = views.get(request.view);
    if (series === undefined) {
      series = new ChartSeries();
      views.set(request.view, series);
    }
    const outcome = series.apply(request.msg, request.buffers.map(fromB64));
    answer = {
      outcome,
      x: toB64(series.xs()),
      y: toB64(series.ys()),
      kept: series._len,
      tail: series._tail,
      seq: series.seq,
      hasWindow: series.hasWindow,
      lastError: series.lastError,
    };
  } catch (err) {
    answer = { exception: String(err?.stack ?? err) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
