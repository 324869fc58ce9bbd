// Building the page from nodes, never from markup strings: every text goes
// in as a text node, so nothing a device or an operator typed can become
// markup or script.
//
//   h('a', { href: '#/fleet', class: 'nav' }, 'text', child)
//   svg('polyline', { points: '0,1 2,3', class: 'line s0' })
//
// Attributes whose value is a function are event listeners (`onclick`);
// `null`, `undefined` and `false` leave an attribute out; children that
// are arrays are flattened, `null`/`false` children are skipped.

const SVG_NS = 'http://www.w3.org/2000/svg';

function fill(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function' && name.startsWith('on')) {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'value' && 'value' in element) {
      element.value = value;
    } else if (name === 'checked' && 'checked' in element) {
      element.checked = Boolean(value);
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Appends children (text, nodes, nested arrays) to `parent`. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** An HTML element. */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replaces the children of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}
