// The console's one door to the gateway: the signed-in keys (sessionStorage of this tab only,
// never localStorage or cookies), JSON requests with either key, and readable errors.

const STORE = sessionStorage;

export const session = {
  get apiKey() { return STORE.getItem('switchyard.apiKey') || ''; },
  get adminKey() { return STORE.getItem('switchyard.adminKey') || ''; },
  save(apiKey, adminKey) {
    if (apiKey) STORE.setItem('switchyard.apiKey', apiKey); else STORE.removeItem('switchyard.apiKey');
    if (adminKey) STORE.setItem('switchyard.adminKey', adminKey); else STORE.removeItem('switchyard.adminKey');
  },
  clear() {
    STORE.removeItem('switchyard.apiKey');
    STORE.removeItem('switchyard.adminKey');
  },
};

/** An error as a person reads it: the gateway's message, with the status and code. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The readable text of an error body (OpenAI shape or not). */
export async function errorFrom(resp) {
  let text = '';
  try { text = await resp.text(); } catch { /* the body is gone */ }
  let message = text.trim() || resp.statusText || 'no details';
  let code = null;
  try {
    const body = JSON.parse(text);
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || body.error.type || null;
    }
  } catch { /* not JSON: keep the text */ }
  return new ApiError(resp.status, `${resp.status}${code ? ` ${code}` : ''}: ${message}`, code);
}

/** `fetch` with a key; resolves to the parsed JSON or throws an ApiError. */
export async function request(path, { key, method = 'GET', body, signal } = {}) {
  const headers = { authorization: `Bearer ${key}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `The gateway could not be reached (${e.message}).`, 'network');
  }
  if (!resp.ok) throw await errorFrom(resp);
  return resp.json();
}

export const asApi = (path, opts = {}) => request(path, { ...opts, key: session.apiKey });
export const asAdmin = (path, opts = {}) => request(path, { ...opts, key: session.adminKey });

/** A query string from the non-empty values of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Creates an element with attributes and children (text or nodes); never parses HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/** Fills a <table> with a header row and body rows (cells: text, nodes, or {text, class}). */
export function fillTable(table, headers, rows, empty = 'Nothing yet.') {
  table.replaceChildren();
  const thead = el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', class: h.num ? 'num' : null }, h.label ?? h))));
  const tbody = el('tbody');
  if (!rows.length) tbody.append(el('tr', {}, el('td', { colspan: headers.length }, empty)));
  for (const row of rows) {
    tbody.append(el('tr', row.attrs || {}, (row.cells || row).map((c, i) => {
      const cls = [headers[i]?.num ? 'num' : null, c?.class].filter(Boolean).join(' ') || null;
      return el('td', { class: cls }, c && typeof c === 'object' && !(c instanceof Node) ? c.text : c);
    })));
  }
  table.append(thead, tbody);
}

/** Shows a short message in the corner (announced to screen readers). */
export function toast(text) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 2000);
}

/** Copies text to the clipboard, with a fallback for pages without clipboard permission. */
export async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = el('textarea', { 'aria-hidden': 'true' });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
  toast('Copied');
}

/** Shows or hides an error paragraph. */
export function showError(node, err) {
  if (!err) { node.hidden = true; node.textContent = ''; return; }
  node.textContent = err.message || String(err);
  node.hidden = false;
}

export const fmtInt = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
export const fmtTime = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '–');
