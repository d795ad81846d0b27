// The Usage page: spend, tokens and prompt-cache hits and savings per day (chart), by model and by
// key and by spend tag, and the recent requests
// of the event log with filters (status, model, type). As admin it reads /admin/usage and
// /admin/requests (every key); with an API key only, /v1/key/usage and /v1/key/requests (its own).

import { session, asApi, asAdmin, query, fillTable, showError, fmtInt, fmtTime } from './api.js';
import { drawUsageChart, daysSince } from './chart.js';

const $ = (id) => document.getElementById(id);
const SPAN_MS = { '24h': 86400000, '7d': 7 * 86400000, '30d': 30 * 86400000 };

function source() {
  return session.adminKey
    ? { get: asAdmin, usage: '/admin/usage', requests: '/admin/requests', scope: 'Every key (admin).' }
    : { get: asApi, usage: '/v1/key/usage', requests: '/v1/key/requests', scope: 'Your key only.' };
}

// The share of prompt tokens read from the providers' caches, as a percentage.
const fmtRatio = (r) => `${((r || 0) * 100).toFixed(1)}%`;

function groupRows(rows, name = (g) => g) {
  return rows.map((r) => [
    name(r.group), fmtInt(r.requests), fmtInt(r.prompt_tokens), fmtInt(r.completion_tokens),
    fmtRatio(r.cache_hit_ratio), `$${r.cache_saved ?? 0}`, `$${r.cost}`,
  ]);
}

const GROUP_HEADERS = (first) => [
  first, { label: 'Requests', num: true }, { label: 'Prompt', num: true }, { label: 'Completion', num: true },
  { label: 'Cache hit', num: true }, { label: 'Cache saved (USD)', num: true }, { label: 'Cost (USD)', num: true },
];

export async function refreshUsage(event) {
  if (event) event.preventDefault();
  const src = source();
  const since = $('us-since').value;
  const sinceMs = Date.now() - SPAN_MS[since];
  $('us-scope').textContent = src.scope;
  showError($('us-error'), null);
  const filters = {
    since,
    status: $('us-status').value.trim(),
    model: $('us-model').value.trim(),
    type: $('us-type').value,
    limit: 50,
  };
  try {
    const [days, models, keys, tags, log, names] = await Promise.all([
      src.get(`${src.usage}${query({ group_by: 'day', since })}`),
      src.get(`${src.usage}${query({ group_by: 'model', since })}`),
      src.get(`${src.usage}${query({ group_by: 'key', since })}`),
      src.get(`${src.usage}${query({ group_by: 'tag', since })}`),
      src.get(`${src.requests}${query(filters)}`),
      session.adminKey ? asAdmin('/admin/keys').catch(() => null) : Promise.resolve(null),
    ]);
    const keyName = new Map((names?.data || []).map((k) => [k.id, `${k.name} (${k.prefix || k.id})`]));
    drawUsageChart($('us-chart'), daysSince(sinceMs), days.data);
    fillTable($('us-by-model'), GROUP_HEADERS('Model'), groupRows(models.data));
    fillTable($('us-by-key'), GROUP_HEADERS('Key'), groupRows(keys.data, (id) => keyName.get(id) || id));
    fillTable($('us-by-tag'), GROUP_HEADERS('Tag'), groupRows(tags.data), 'No tagged requests (x-switchyard-tags or metadata.tags).');
    fillTable($('us-requests'), [
      'Time', 'Request id', 'Key', 'Model', 'Provider', 'Type', 'Status', 'End', { label: 'TTFT ms', num: true },
      'Latency', { label: 'Tokens', num: true }, { label: 'Cost (USD)', num: true }, 'Error',
    ], log.data.map((r) => ({
      attrs: { 'data-request-id': r.request_id },
      cells: [
        fmtTime(r.finished_at || r.started_at), r.request_id, r.masked_key, r.requested_model, r.provider || '–',
        r.request_type || '–', r.status ?? '–', r.end_reason, r.ttft_ms ?? '–', r.latency_bucket,
        `${fmtInt(r.prompt_tokens)} + ${fmtInt(r.completion_tokens)}`, { text: `$${r.cost}`, class: 'cost-cell' },
        r.error_text || '',
      ],
    })), 'No requests match.');
  } catch (e) {
    showError($('us-error'), e);
  }
}

export function initUsage() {
  $('us-form').addEventListener('submit', refreshUsage);
}
