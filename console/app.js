// The console's entry: sign in (an API key, the admin key, or both; checked against the gateway and
// kept in this tab's sessionStorage only), sign out, the page tabs (#playground, #usage, #keys,
// #providers) and the light/dark theme (system preference, or the toggle).

import { session, request, showError } from './api.js';
import { initPlayground, showPlayground, resetPlayground } from './playground.js';
import { initUsage, refreshUsage } from './usage.js';
import { initKeys, refreshKeys } from './keys.js';
import { initProviders, refreshProviders } from './providers.js';

const $ = (id) => document.getElementById(id);
const PAGES = ['playground', 'usage', 'keys', 'providers'];
const ADMIN_PAGES = ['keys', 'providers'];

// --- theme ---------------------------------------------------------------------------------------
const THEME = 'switchyard.theme'; // a display preference, not a secret
const media = window.matchMedia('(prefers-color-scheme: dark)');

function applyTheme() {
  const chosen = localStorage.getItem(THEME);
  const dark = chosen ? chosen === 'dark' : media.matches;
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
  const toggle = $('theme-toggle');
  toggle.setAttribute('aria-pressed', String(dark));
  toggle.textContent = dark ? 'Light theme' : 'Dark theme';
}

function toggleTheme() {
  const dark = document.documentElement.dataset.theme === 'dark';
  localStorage.setItem(THEME, dark ? 'light' : 'dark');
  applyTheme();
}

// --- pages ---------------------------------------------------------------------------------------
function pageFromHash() {
  const wanted = window.location.hash.slice(1);
  const allowed = PAGES.filter((p) => session.adminKey || !ADMIN_PAGES.includes(p));
  if (allowed.includes(wanted)) return wanted;
  return session.apiKey ? 'playground' : session.adminKey ? 'usage' : 'playground';
}

function show(page) {
  for (const p of PAGES) $(`page-${p}`).hidden = p !== page;
  for (const tab of document.querySelectorAll('.tab')) {
    if (tab.dataset.page === page) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  if (page === 'playground') showPlayground();
  if (page === 'usage') refreshUsage();
  if (page === 'keys') refreshKeys();
  if (page === 'providers') refreshProviders();
}

function route() {
  if (!session.apiKey && !session.adminKey) return;
  show(pageFromHash());
}

// --- signing in and out --------------------------------------------------------------------------
async function describe(apiKey, adminKey) {
  const parts = [];
  if (apiKey) {
    const me = await request('/v1/key', { key: apiKey });
    parts.push(`key ${me.name}`);
  }
  if (adminKey) {
    await request('/admin/providers', { key: adminKey });
    parts.push('admin');
  }
  return parts.join(' + ');
}

function enter(who) {
  $('sign-in').hidden = true;
  $('app').hidden = false;
  $('sign-out').hidden = false;
  $('who').hidden = false;
  $('who').textContent = `Signed in: ${who}`;
  for (const t of document.querySelectorAll('.admin-only')) t.hidden = !session.adminKey;
  route();
}

async function signIn(event) {
  event.preventDefault();
  const apiKey = $('api-key').value.trim();
  const adminKey = $('admin-key').value.trim();
  const error = $('sign-in-error');
  if (!apiKey && !adminKey) {
    showError(error, new Error('Enter an API key, the admin key, or both.'));
    return;
  }
  try {
    const who = await describe(apiKey, adminKey);
    session.save(apiKey, adminKey);
    $('sign-in-form').reset();
    showError(error, null);
    enter(who);
    $('main').focus();
  } catch (e) {
    showError(error, new Error(`Sign-in failed: ${e.message}`));
  }
}

function signOut() {
  resetPlayground();
  session.clear();
  $('app').hidden = true;
  $('sign-out').hidden = true;
  $('who').hidden = true;
  $('sign-in').hidden = false;
  for (const id of ['pg-answer', 'pg-reasoning-text', 'us-requests', 'keys-table', 'providers']) $(id).replaceChildren();
  $('new-key-value').textContent = '';
  $('new-key').hidden = true;
  history.replaceState(null, '', window.location.pathname);
  $('api-key').focus();
}

async function resume() {
  if (!session.apiKey && !session.adminKey) return;
  try {
    enter(await describe(session.apiKey, session.adminKey));
  } catch (e) {
    session.clear();
    showError($('sign-in-error'), new Error(`Signed out: ${e.message}`));
  }
}

applyTheme();
media.addEventListener('change', applyTheme);
$('theme-toggle').addEventListener('click', toggleTheme);
$('sign-in-form').addEventListener('submit', signIn);
$('sign-out').addEventListener('click', signOut);
for (const tab of document.querySelectorAll('.tab')) {
  tab.addEventListener('click', () => {
    if (window.location.hash === `#${tab.dataset.page}`) route();
    else window.location.hash = tab.dataset.page;
  });
}
window.addEventListener('hashchange', route);
initPlayground();
initUsage();
initKeys();
initProviders();
resume();
