// The usage chart, drawn as inline SVG by this code (no library): one group per day with a bar for
// spend and a bar for tokens, each scaled to its own largest value, with labelled axes and a
// text summary for screen readers. Amounts are shown as the gateway's decimal strings; numbers are
// only used for bar heights.

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Every day from `sinceMs` to today (UTC, yyyy-mm-dd). */
export function daysSince(sinceMs, nowMs = Date.now()) {
  const out = [];
  for (let d = Math.floor(sinceMs / 86400000); d <= Math.floor(nowMs / 86400000); d++) {
    out.push(new Date(d * 86400000).toISOString().slice(0, 10));
  }
  return out;
}

/**
 * Draws `rows` ({group: 'yyyy-mm-dd', cost: '0.0012', prompt_tokens, completion_tokens}) into
 * `container`, one slot per day of `days`.
 */
export function drawUsageChart(container, days, rows) {
  const byDay = new Map(rows.map((r) => [r.group, r]));
  const points = days.map((day) => {
    const r = byDay.get(day);
    return {
      day,
      costText: r ? r.cost : '0',
      cost: r ? Number(r.cost) : 0,
      tokens: r ? r.prompt_tokens + r.completion_tokens : 0,
      requests: r ? r.requests : 0,
    };
  });
  const maxCost = Math.max(...points.map((p) => p.cost), 0);
  const maxTokens = Math.max(...points.map((p) => p.tokens), 0);
  const width = 640;
  const height = 220;
  const left = 8;
  const bottom = 28;
  const top = 20;
  const plot = height - top - bottom;
  const slot = (width - left * 2) / Math.max(points.length, 1);
  const bar = Math.max(Math.min(slot * 0.35, 28), 2);

  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc' });
  const total = points.reduce((n, p) => n + p.requests, 0);
  root.append(svg('title', { id: 'chart-title' }, 'Spend and tokens per day'));
  root.append(svg('desc', { id: 'chart-desc' }, points.filter((p) => p.requests)
    .map((p) => `${p.day}: ${p.requests} requests, ${p.tokens} tokens, USD ${p.costText}`).join('; ') || 'No requests in this period.'));
  root.append(svg('line', { x1: left, x2: width - left, y1: height - bottom, y2: height - bottom, class: 'axis' }));
  points.forEach((p, i) => {
    const x = left + i * slot + slot / 2;
    const hc = maxCost > 0 ? (p.cost / maxCost) * plot : 0;
    const ht = maxTokens > 0 ? (p.tokens / maxTokens) * plot : 0;
    const c = svg('rect', { x: x - bar - 1, y: height - bottom - hc, width: bar, height: Math.max(hc, 0), class: 'cost' });
    c.append(svg('title', {}, `${p.day}: USD ${p.costText}`));
    const t = svg('rect', { x: x + 1, y: height - bottom - ht, width: bar, height: Math.max(ht, 0), class: 'tokens' });
    t.append(svg('title', {}, `${p.day}: ${p.tokens} tokens`));
    root.append(c, t);
    const every = Math.ceil(points.length / 8);
    if (i % every === 0 || i === points.length - 1) {
      root.append(svg('text', { x, y: height - 10, 'text-anchor': 'middle' }, p.day.slice(5)));
    }
  });
  const maxCostText = points.reduce((best, p) => (p.cost >= best.cost ? p : best), { cost: -1, costText: '0' }).costText;
  root.append(svg('text', { x: left, y: 12 }, `highest day: USD ${maxCostText}, ${maxTokens} tokens · ${total} requests in all`));

  const legend = document.createElement('p');
  legend.className = 'legend';
  for (const [cls, label] of [['cost', 'Spend (USD)'], ['tokens', 'Tokens']]) {
    const item = document.createElement('span');
    const sw = document.createElement('span');
    sw.className = `swatch ${cls}`;
    item.append(sw, label);
    legend.append(item);
  }
  container.replaceChildren(root, legend);
}
