// The sign-in page: name and password to POST /api/v1/session, which sets
// the HttpOnly session cookie; then back to the page that asked for it.

import { post } from './api.js';
import { h, replace } from './dom.js';
import { t, explain } from './i18n.js';
import { signedIn } from './app.js';

export async function renderLogin(view) {
  const message = h('p', { id: 'login-error', class: 'error', role: 'alert', hidden: true });
  const name = h('input', { id: 'login-name', name: 'name', autocomplete: 'username', required: true });
  const password = h('input', {
    id: 'login-password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const button = h('button', { type: 'submit' }, t('login.submit'));
  const form = h(
    'form',
    {
      id: 'login',
      class: 'panel narrow',
      onsubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        message.hidden = true;
        try {
          await post('/api/v1/session', { name: name.value.trim(), password: password.value });
          password.value = '';
          const next = sessionStorage.getItem('cpe-console-next');
          sessionStorage.removeItem('cpe-console-next');
          await signedIn(next);
        } catch (error) {
          replace(message, error.status === 401 ? t('login.bad') : explain(error));
          message.hidden = false;
        } finally {
          button.disabled = false;
        }
      },
    },
    h('h1', null, t('login.title')),
    h('p', { class: 'muted' }, t('login.intro')),
    h('label', { for: 'login-name' }, t('login.name')),
    name,
    h('label', { for: 'login-password' }, t('login.password')),
    password,
    button,
    message,
  );
  replace(view, form);
  name.focus();
}
