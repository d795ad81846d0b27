// The Keys page (admin): every key with its balance, spend, limits, models, budget and quota
// windows (`5h:usd=2,7d:requests=2000`, each with what it used); create one
// (its secret shown once, with a copy button), edit limits/models/budget, top up, revoke — all
// through the /admin/keys API.

import { asAdmin, el, fillTable, showError, copy, toast } from './api.js';

const $ = (id) => document.getElementById(id);

const optionalInt = (v) => (v.trim() === '' ? null : Number(v.trim()));

function formBody(editing) {
  const body = {
    name: $('kf-name').value.trim(),
    rpm: optionalInt($('kf-rpm').value),
    tpm: optionalInt($('kf-tpm').value),
    max_concurrent: optionalInt($('kf-conc').value),
    models: $('kf-models').value.trim() ? $('kf-models').value.split(',').map((m) => m.trim()).filter(Boolean) : null,
  };
  const budget = $('kf-budget').value.trim();
  if (budget) {
    body.budget = budget; // a decimal string: money never goes through a float
    body.budget_period = $('kf-period').value;
  } else if (editing) {
    body.budget = null;
  }
  const quotas = $('kf-quotas').value.trim();
  if (quotas) body.quotas = quotas; // the admin API reads the same spec as the CLI's --quota
  else if (editing) body.quotas = null;
  const credits = $('kf-credits').value.trim();
  if (credits) body.credits = credits;
  for (const k of ['rpm', 'tpm', 'max_concurrent', 'models']) if (!editing && body[k] === null) delete body[k];
  return body;
}

// A key's windows as the spec the form takes back: 5h:usd=2:requests=10,7d:tokens=100000.
function quotaSpec(quotas) {
  return (quotas || []).map((q) => {
    const parts = [q.window];
    if (q.usd != null) parts.push(`usd=${q.usd}`);
    if (q.requests != null) parts.push(`requests=${q.requests}`);
    if (q.tokens != null) parts.push(`tokens=${q.tokens}`);
    return parts.join(':');
  }).join(',');
}

// What a key's windows have used: "5h $0.4/$2 · 7d 12/2000 req".
function quotaUse(quotas) {
  return (quotas || []).map((q) => {
    const used = [];
    if (q.usd != null) used.push(`$${q.used.usd}/$${q.usd}`);
    if (q.requests != null) used.push(`${q.used.requests}/${q.requests} req`);
    if (q.tokens != null) used.push(`${q.used.tokens}/${q.tokens} tok`);
    return `${q.window} ${used.join(' ')}`;
  }).join(' · ');
}

function resetForm() {
  $('key-form').reset();
  $('kf-id').value = '';
  $('key-form-title').textContent = 'Create a key';
  $('kf-submit').textContent = 'Create key';
  $('kf-cancel').hidden = true;
  $('kf-credits').placeholder = '0';
}

function edit(k) {
  $('kf-id').value = k.id;
  $('kf-name').value = k.name;
  $('kf-credits').value = '';
  $('kf-credits').placeholder = `keep ${k.balance}`;
  $('kf-rpm').value = k.limits.rpm ?? '';
  $('kf-tpm').value = k.limits.tpm ?? '';
  $('kf-conc').value = k.limits.max_concurrent ?? '';
  $('kf-models').value = (k.models || []).join(', ');
  $('kf-budget').value = k.limits.budget ? k.limits.budget.limit : '';
  $('kf-period').value = k.limits.budget ? k.limits.budget.period : 'month';
  $('kf-quotas').value = quotaSpec(k.limits.quotas);
  $('key-form-title').textContent = `Edit ${k.name}`;
  $('kf-submit').textContent = 'Save changes';
  $('kf-cancel').hidden = false;
  $('kf-name').focus();
}

async function submit(event) {
  event.preventDefault();
  showError($('key-error'), null);
  const id = $('kf-id').value;
  try {
    if (id) {
      await asAdmin(`/admin/keys/${encodeURIComponent(id)}`, { method: 'PATCH', body: formBody(true) });
      toast('Key saved');
    } else {
      const created = await asAdmin('/admin/keys', { method: 'POST', body: formBody(false) });
      $('new-key-value').textContent = created.key;
      $('new-key').hidden = false;
      $('new-key-copy').focus();
    }
    resetForm();
    await refreshKeys();
  } catch (e) {
    showError($('key-error'), e);
  }
}

async function act(what, k, body) {
  showError($('key-error'), null);
  try {
    if (what === 'revoke') await asAdmin(`/admin/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
    else await asAdmin(`/admin/keys/${encodeURIComponent(k.id)}`, { method: 'PATCH', body });
    toast(what === 'revoke' ? `Revoked ${k.name}` : `Topped up ${k.name}`);
    await refreshKeys();
  } catch (e) {
    showError($('key-error'), e);
  }
}

function actions(k) {
  if (k.revoked_at || k.revoked) return el('span', { class: 'hint' }, 'revoked');
  const amount = el('input', { 'aria-label': `Top-up amount for ${k.name} (USD)`, inputmode: 'decimal', placeholder: 'USD', size: 6, class: 'topup' });
  const revoke = el('button', { type: 'button', class: 'small danger', 'data-action': 'revoke' }, 'Revoke');
  revoke.addEventListener('click', () => {
    if (revoke.dataset.armed) { act('revoke', k); return; }
    revoke.dataset.armed = '1';
    revoke.textContent = 'Confirm revoke';
    revoke.setAttribute('aria-label', `Confirm revoking ${k.name}`);
  });
  return el('div', { class: 'buttons' },
    amount,
    el('button', { type: 'button', class: 'small', onclick: () => amount.value.trim() && act('top_up', k, { top_up: amount.value.trim() }) }, 'Top up'),
    el('button', { type: 'button', class: 'small', onclick: () => edit(k) }, 'Edit'),
    revoke);
}

export async function refreshKeys() {
  try {
    const list = await asAdmin('/admin/keys');
    fillTable($('keys-table'), [
      'Name', 'Key', { label: 'Balance', num: true }, { label: 'Spent', num: true }, 'Limits', 'Models', 'Budget', 'Actions',
    ], list.data.map((k) => {
      const revoked = Boolean(k.revoked_at || k.revoked);
      const l = k.limits || {};
      return {
        attrs: { 'data-key-id': k.id, 'data-key-name': k.name, class: revoked ? 'revoked-row' : null },
        cells: [
          { text: k.name, class: revoked ? 'revoked' : null },
          k.prefix || k.id,
          `$${k.balance}`,
          `$${k.spend}`,
          `rpm ${l.rpm ?? '∞'} · tpm ${l.tpm ?? '∞'} · conc ${l.max_concurrent ?? '∞'}`,
          k.models ? k.models.join(', ') : 'all',
          [l.budget ? `$${l.budget.spent} of $${l.budget.limit}/${l.budget.period}` : '', quotaUse(l.quotas)]
            .filter(Boolean).join(' · ') || '–',
          actions(k),
        ],
      };
    }), 'No keys yet.');
  } catch (e) {
    showError($('key-error'), e);
  }
}

export function initKeys() {
  $('key-form').addEventListener('submit', submit);
  $('kf-cancel').addEventListener('click', resetForm);
  $('new-key-copy').addEventListener('click', () => copy($('new-key-value').textContent));
  $('new-key-done').addEventListener('click', () => {
    $('new-key-value').textContent = '';
    $('new-key').hidden = true;
  });
}
