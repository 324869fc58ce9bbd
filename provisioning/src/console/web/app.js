// The console's shell: who is signed in, the header (navigation, language
// switch, sign-out) and the hash router that shows one page at a time:
//
//   #/login  #/fleet?search=&filter=&sort=&offset=  #/device/<id>
//   #/alerts  #/case  #/case/<id>
//
// Each page is `render(view, context)`; the context carries the operator
// (`me`, from GET /api/v1/session), the route's parameters, an AbortSignal
// that ends the page's requests when another page is shown, and
// `onLeave(fn)` for timers. A 401 anywhere goes back to the sign-in page.

import { get, call, ApiError } from './api.js';
import { h, replace } from './dom.js';
import { t, lang, setLang, roleName } from './i18n.js';
import { renderLogin } from './login.js';
import { renderFleet } from './fleet.js';
import { renderDevice } from './device.js';
import { renderAlerts } from './alerts.js';
import { renderCase } from './case.js';

const PAGES = {
  login: renderLogin,
  fleet: renderFleet,
  device: renderDevice,
  alerts: renderAlerts,
  case: renderCase,
};

let me = null;
let leaving = [];
let controller = null;

/** The route in the address bar: page name, its id and its query. */
export function currentRoute() {
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const [page, ...rest] = path.split('/');
  return {
    page: PAGES[page] ? page : 'fleet',
    id: rest.length ? decodeURIComponent(rest.join('/')) : null,
    query: new URLSearchParams(query),
  };
}

/** Goes to a page (`go('device', id)`, `go('fleet', null, {search})`). */
export function go(page, id, query) {
  const q = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== '' && v != null)).toString() : '';
  const target = `#/${page}${id ? `/${encodeURIComponent(id)}` : ''}${q ? `?${q}` : ''}`;
  if (location.hash === target) show();
  else location.hash = target;
}

/** The link to a page. */
export const href = (page, id) => `#/${page}${id ? `/${encodeURIComponent(id)}` : ''}`;

function header() {
  const top = document.getElementById('top');
  const route = currentRoute();
  const nav = me
    ? h(
        'nav',
        { 'aria-label': t('nav.label') },
        ['fleet', 'alerts', 'case'].map((page) =>
          h('a', { href: href(page), class: route.page === page ? 'here' : null }, t(`nav.${page}`)),
        ),
      )
    : null;
  replace(
    top,
    h('a', { class: 'brand', href: href('fleet') }, t('brand')),
    nav,
    h('span', { class: 'spacer' }),
    me ? h('span', { id: 'who' }, t('who', { name: me.operator, role: roleName(me.role) })) : null,
    h(
      'button',
      {
        id: 'lang',
        type: 'button',
        lang: lang() === 'ja' ? 'en' : 'ja',
        onclick: () => {
          setLang(lang() === 'ja' ? 'en' : 'ja');
          show();
        },
      },
      t('lang.switch'),
    ),
    me ? h('button', { id: 'logout', type: 'button', onclick: logout }, t('logout')) : null,
  );
  document.title = t('brand');
}

async function logout() {
  try {
    await call('DELETE', '/api/v1/session');
  } catch {
    // Signed out already, or the server is gone: the sign-in page either way.
  }
  me = null;
  go('login');
}

/** Called by the sign-in page once the cookie is set. */
export async function signedIn(next) {
  me = await get('/api/v1/session');
  if (next && next !== '#/login') location.hash = next;
  else go('fleet');
}

/** Shows the page the address names. */
export async function show() {
  for (const fn of leaving) fn();
  leaving = [];
  controller?.abort();
  controller = new AbortController();
  const signal = controller.signal;
  const view = document.getElementById('view');
  let route = currentRoute();
  if (!me && route.page !== 'login') {
    try {
      me = await get('/api/v1/session', signal);
    } catch (error) {
      if (error.name === 'AbortError') return;
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
      sessionStorage.setItem('cpe-console-next', location.hash);
      location.hash = '#/login';
      return;
    }
  }
  route = currentRoute();
  if (location.hash.startsWith('#/login')) route = { ...route, page: 'login' };
  header();
  view.setAttribute('data-page', route.page);
  view.removeAttribute('data-ready');
  const context = {
    me,
    id: route.id,
    query: route.query,
    signal,
    onLeave: (fn) => leaving.push(fn),
    refresh: show,
  };
  try {
    await PAGES[route.page](view, context);
    if (!signal.aborted) view.setAttribute('data-ready', route.page);
  } catch (error) {
    if (error.name === 'AbortError') return;
    if (error instanceof ApiError && error.status === 401) {
      me = null;
      sessionStorage.setItem('cpe-console-next', location.hash);
      location.hash = '#/login';
      return;
    }
    replace(view, h('p', { class: 'error', role: 'alert' }, t('error.load', { detail: error.message })));
    view.setAttribute('data-ready', route.page);
  }
}

window.addEventListener('hashchange', show);
document.documentElement.lang = lang();
show();
