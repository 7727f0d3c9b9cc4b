// The render skeleton every widget view shares: styles, a render scope, the refused-intent
// notice, mounting and cleanup. A widget only builds its own DOM and bindings.
import { showIntentErrors } from "./intent_errors.js";
import { createScope } from "./scope.js";
import { BASE_CSS, injectStyle } from "./style.js";

/**
 * Render a widget view into `el`.
 *
 * Injects the base CSS and the widget's `css` (under `name`), creates the view's scope, calls
 * `build({model, el, scope})` - which returns the root element, or `{root, ...handles}` - shows
 * refused intents inside the root, appends it to `el`, and removes it on dispose.
 * @returns {{root: HTMLElement, scope: object, dispose: () => void} & Record<string, any>}
 *   the handles `build` returned, plus `dispose` (idempotent: anywidget's cleanup)
 */
export function renderWidget({ model, el }, { name, css }, build) {
  injectStyle("base", BASE_CSS, el);
  if (css) injectStyle(name, css, el);
  const scope = createScope(model);
  const built = build({ model, el, scope });
  const handles = built instanceof Element ? { root: built } : built;
  const { root } = handles;
  showIntentErrors(scope, root); // refused intents: a transient notice, removed on dispose
  el.append(root);
  scope.add(() => root.remove());
  return { ...handles, scope, dispose: () => scope.dispose() };
}

/** anywidget's `render` for a widget built by `build` (see `renderWidget`). */
export function widgetRender(spec, build) {
  return (ctx) => renderWidget(ctx, spec, build).dispose;
}
