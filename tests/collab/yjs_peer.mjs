// A real yjs replica for the interop test: reads one JSON request on stdin, answers on stdout.
// Request: {update, position, positions?, insertAt, text}  (binary fields base64)
// Request: ... makeAt?: UTF-16 indexes where yjs creates positions (made before the insert)
// Answer:  {text, positionIndex, positionIndexes, madePositions, update, endPosition, midPosition}
// yjs is loaded from js/node_modules (the front end's own copy, the one bundled into the widget).
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "..", "js", "package.json"));
const Y = require("yjs");

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const b64 = (bytes) => Buffer.from(bytes).toString("base64");
const bytes = (s) => new Uint8Array(Buffer.from(s, "base64"));

const doc = new Y.Doc();
const text = doc.getText("text");
Y.applyUpdate(doc, bytes(request.update));
const position = Y.decodeRelativePosition(bytes(request.position));
const resolve = (b) => Y.createAbsolutePositionFromRelativePosition(Y.decodeRelativePosition(bytes(b)), doc)?.index ?? null;
const positionIndex = Y.createAbsolutePositionFromRelativePosition(position, doc)?.index ?? null;
const positionIndexes = (request.positions ?? []).map(resolve);
// Positions yjs itself makes at the given UTF-16 indexes (for Python to resolve).
const madePositions = (request.makeAt ?? []).map((i) =>
  b64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(text, i))),
);
const before = Y.encodeStateVector(doc);
text.insert(request.insertAt, request.text);
const answer = {
  text: text.toString(),
  positionIndex,
  positionIndexes,
  madePositions,
  update: b64(Y.encodeStateAsUpdate(doc, before)),
  endPosition: b64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(text, text.length))),
  midPosition: b64(Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(text, 2))),
};
process.stdout.write(JSON.stringify(answer));
