// An awareness-like object for y-codemirror.next, fed from rtwidgets presence (no y-protocols).
//
// Contract (what yRemoteSelections uses): `doc`, `getLocalState()`, `setLocalStateField()`,
// `getStates()` -> Map<number, state>, and `on/off("change", fn)` with
// `fn({added, updated, removed}, origin)`. Remote states come from the widget's `cursors`
// trait (one entry per remote connection, relative positions as base64) via `setRemote`;
// they have no timers and vanish exactly when the kernel drops them (the user left).
import * as Y from "yjs";
import { fromBase64, toBase64 } from "lib0/buffer";
import { userColor } from "./color.js";

/** Decode a base64 Yjs relative position; null for anything undecodable. */
export function decodePosition(b64) {
  if (typeof b64 !== "string" || b64 === "") return null;
  try {
    return Y.decodeRelativePosition(fromBase64(b64));
  } catch {
    return null;
  }
}

/** Encode a relative position (object or its JSON form) to base64. */
export function encodePosition(pos) {
  return toBase64(Y.encodeRelativePosition(Y.createRelativePositionFromJSON(pos)));
}

function sameState(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class TraitAwareness {
  /** @param {Y.Doc} doc the view's document (its clientID is the local id) */
  constructor(doc) {
    this.doc = doc;
    this.clientID = doc.clientID;
    /** @type {Map<number, any>} */
    this.states = new Map();
    this.listeners = new Set();
    // remote connection id (string from the gateway) -> small integer used as awareness id
    this.ids = new Map();
    this.nextId = 1;
  }

  getLocalState() {
    return this.states.get(this.clientID) ?? null;
  }

  setLocalState(state) {
    const had = this.states.has(this.clientID);
    const prev = this.states.get(this.clientID);
    if (state === null) this.states.delete(this.clientID);
    else this.states.set(this.clientID, state);
    if (had && state !== null && sameState(prev, state)) return;
    const change = { added: [], updated: [], removed: [] };
    if (state === null) change.removed.push(this.clientID);
    else if (had) change.updated.push(this.clientID);
    else change.added.push(this.clientID);
    this.emit(change, "local");
  }

  setLocalStateField(field, value) {
    const state = this.getLocalState();
    if (state !== null) this.setLocalState({ ...state, [field]: value });
  }

  getStates() {
    return this.states;
  }

  /**
   * Replace every remote state by `entries` ({clientId, name, color, anchorPos, headPos}).
   * Entries whose positions do not decode are shown without a cursor. A renamed entry is
   * reported as removed, then added (two changes), so its caret label is redrawn.
   */
  setRemote(entries) {
    const seen = new Set();
    const change = { added: [], updated: [], removed: [] };
    const next = [];
    for (const entry of entries) {
      if (!entry || typeof entry.clientId !== "string") continue;
      let id = this.ids.get(entry.clientId);
      if (id === undefined) {
        id = this.nextId++;
        if (id === this.clientID) id = this.nextId++;
        this.ids.set(entry.clientId, id);
      }
      seen.add(id);
      const anchor = decodePosition(entry.anchorPos);
      const head = decodePosition(entry.headPos);
      next.push([id, {
        // The shared palette decides a missing or unsafe colour, as everywhere else.
        user: { name: String(entry.name ?? "?"), color: userColor(entry.color, entry.userId ?? entry.clientId) },
        cursor: anchor && head ? { anchor, head } : null,
      }]);
    }
    // y-codemirror.next keeps a drawn caret whose colour is unchanged (its widget's eq() ignores
    // the name), so a rename in the same colour would leave the old label up (e.g. "anonymous"
    // and "bob" share a palette colour). Renamed users leave in one change and come back in the
    // next: their caret is drawn anew.
    const renamed = next.filter(([id, state]) => {
      const prev = this.states.get(id);
      return prev !== undefined && prev.user.name !== state.user.name;
    }).map(([id]) => id);
    if (renamed.length) {
      for (const id of renamed) this.states.delete(id);
      this.emit({ added: [], updated: [], removed: renamed }, "remote");
    }
    for (const [id, state] of next) {
      const prev = this.states.get(id);
      if (prev === undefined) change.added.push(id);
      else if (!sameState(prev, state)) change.updated.push(id);
      else continue;
      this.states.set(id, state);
    }
    for (const [clientId, id] of this.ids) {
      if (!seen.has(id)) {
        this.ids.delete(clientId);
        if (this.states.delete(id)) change.removed.push(id);
      }
    }
    if (change.added.length || change.updated.length || change.removed.length) this.emit(change, "remote");
  }

  on(event, fn) {
    if (event === "change") this.listeners.add(fn);
  }

  off(event, fn) {
    if (event === "change") this.listeners.delete(fn);
  }

  emit(change, origin) {
    for (const fn of [...this.listeners]) fn(change, origin);
  }

  destroy() {
    this.listeners.clear();
    this.states.clear();
  }
}
