// Building DOM nodes and formatting values. Text always goes in as text nodes (never
// innerHTML), so nothing the API returns can become markup.

/** h('button', {class: 'primary', onclick}, 'Save') -> an element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** SVG elements (charts). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let nextId = 0;
/** A unique id for label/aria wiring. */
export function uid(prefix) {
  nextId += 1;
  return `${prefix || 'f'}-${nextId}`;
}

const NUM = new Intl.NumberFormat('en-US');
export function num(n) {
  if (n === null || n === undefined || n === '') return '-';
  return NUM.format(Number(n));
}

/** 1234567 -> "1.23M". */
export function compact(n) {
  if (n === null || n === undefined) return '-';
  const a = Math.abs(n);
  if (a >= 1e9) return `${trim(n / 1e9)}G`;
  if (a >= 1e6) return `${trim(n / 1e6)}M`;
  if (a >= 1e4) return `${trim(n / 1e3)}k`;
  return trim(n);
}

function trim(x) {
  return String(Number(x.toFixed(x >= 100 || x <= -100 ? 0 : 2)));
}

export function pct(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '-';
  return `${(x * 100).toFixed(x < 0.1 ? 2 : 1)}%`;
}

export function ms(x) {
  if (x === null || x === undefined) return '-';
  if (x >= 10000) return `${(x / 1000).toFixed(1)} s`;
  return x < 10 && !Number.isInteger(x) ? `${Number(x.toFixed(1))} ms` : `${Math.round(x)} ms`;
}

/** An RFC 3339 time or unix ms as local "2026-12-07 14:03:05". */
export function when(t) {
  if (t === null || t === undefined || t === '') return '-';
  const d = typeof t === 'number' ? new Date(t) : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  const p = (v) => String(v).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** "3 min ago" from unix ms. */
export function ago(msAt) {
  if (!msAt) return '-';
  const s = Math.round((Date.now() - msAt) / 1000);
  if (s < 60) return `${Math.max(s, 0)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function badge(text, kind) {
  return h('span', { class: `badge ${kind || 'neutral'}` }, text);
}
