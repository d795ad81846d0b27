// The Providers page (admin): each provider's routes with breaker state, cooldown, recent time to
// first token (EWMA), recent error rate, the share of prompt tokens read from the provider's cache
// and the last error, from /admin/providers.

import { asAdmin, el, fillTable, showError } from './api.js';

const $ = (id) => document.getElementById(id);

function errorRate(r) {
  if (!r.recent_requests) return '–';
  return `${Math.round((100 * r.recent_failures) / r.recent_requests)}% of ${r.recent_requests}`;
}

export async function refreshProviders() {
  showError($('prov-error'), null);
  try {
    const list = await asAdmin('/admin/providers');
    const cards = list.data.map((p) => {
      const table = el('table');
      fillTable(table, ['Route', 'Breaker', { label: 'TTFT (ms)', num: true }, 'Error rate', { label: 'OK / failed', num: true }, { label: 'Cache hit', num: true }, 'Last error'],
        p.routes.map((r) => [
          r.route,
          { text: r.state === 'open' ? `open (${Math.ceil(r.cooldown_remaining_ms / 1000)} s left)` : r.state.replace('_', '-'), class: `state-${r.state}` },
          r.ttft_ewma_ms ?? '–',
          errorRate(r),
          `${r.successes} / ${r.failures}`,
          r.prompt_tokens ? `${((r.cache_hit_ratio || 0) * 100).toFixed(1)}%` : '–',
          r.last_error ? `${r.last_error} (${Math.round((r.last_error_ago_ms || 0) / 1000)} s ago)` : '',
        ]), 'No routes use this provider.');
      return el('div', { class: 'card provider', 'data-provider': p.name },
        el('h3', {}, `${p.name} `, el('span', { class: 'hint' }, `${p.kind} · ${p.base_url}`)),
        el('div', { class: 'scroll' }, table));
    });
    $('providers').replaceChildren(...cards);
  } catch (e) {
    showError($('prov-error'), e);
  }
}

export function initProviders() {
  $('prov-refresh').addEventListener('click', refreshProviders);
}
