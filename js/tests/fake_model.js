// A minimal stand-in for anywidget's model: get/set/on/off/send/save_changes with a
// Backbone-like event registry, so tests can count the listeners a view leaves behind.

export class FakeModel {
  /** @param {Record<string, any>} state initial traits */
  constructor(state = {}) {
    this.state = { ...state };
    this.listeners = new Map();
    /** every `send` call's content, in order */
    this.sent = [];
    this.saved = 0;
  }

  get(name) {
    return this.state[name];
  }

  /** Set a trait as the kernel would: the value changes and `change:<name>` fires. */
  set(name, value) {
    this.state[name] = value;
    this.emit(`change:${name}`, this, value);
  }

  /** Set several traits, then fire their change events (like one traitlets sync). */
  update(values) {
    Object.assign(this.state, values);
    for (const [name, value] of Object.entries(values)) this.emit(`change:${name}`, this, value);
  }

  on(event, callback) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(callback);
  }

  off(event, callback) {
    if (event === undefined) {
      this.listeners.clear();
      return;
    }
    const set = this.listeners.get(event);
    if (!set) return;
    if (callback === undefined) set.clear();
    else set.delete(callback);
    if (set.size === 0) this.listeners.delete(event);
  }

  emit(event, ...args) {
    for (const cb of [...(this.listeners.get(event) ?? [])]) cb(...args);
  }

  send(content, callbacks, buffers) {
    this.sent.push(content);
    void callbacks;
    void buffers;
  }

  save_changes() {
    this.saved += 1;
  }

  /** Total number of registered listeners across all events. */
  listenerCount() {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }
}

/** Render `widget` into a fresh element attached to the document; returns handles. */
export function mount(widget, state) {
  const model = new FakeModel(state);
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = widget.render({ model, el });
  return { model, el, cleanup };
}
