// The fleet overview: counts (all, up, down, suspended, alerting), then one
// page of the device table with search by institution code or device
// name, a state filter, a sort and paging. Search, filter, sort and paging
// all happen in the server (GET /api/v1/devices): the page never holds
// more than one page of devices, however large the fleet.

import { get, withQuery } from './api.js';
import { h, replace } from './dom.js';
import { t, ago, dateOnly, daysLeft, number } from './i18n.js';
import { href } from './app.js';

const FILTERS = ['', 'up', 'down', 'suspended', 'alerting'];
const SORTS = ['id', 'last_seen', 'cert_not_after', 'state'];
const PAGE_SIZES = [25, 50, 100, 200];
const SEARCH_DELAY_MS = 250;

export async function renderFleet(view, { query, signal }) {
  const state = {
    search: query.get('search') ?? '',
    filter: FILTERS.includes(query.get('filter')) ? query.get('filter') : '',
    sort: SORTS.includes(query.get('sort')) ? query.get('sort') : 'id',
    desc: query.get('desc') === 'true',
    limit: PAGE_SIZES.includes(Number(query.get('limit'))) ? Number(query.get('limit')) : 50,
    offset: Math.max(0, Number.parseInt(query.get('offset') ?? '0', 10) || 0),
  };
  const counts = h('div', { id: 'counts', class: 'counts' });
  const table = h('tbody', { id: 'devices' });
  const status = h('p', { id: 'page-status', class: 'muted', 'aria-live': 'polite' });
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const previous = h('button', { type: 'button', id: 'previous' }, t('fleet.previous'));
  const next = h('button', { type: 'button', id: 'next' }, t('fleet.next'));
  let generation = 0;
  let pending = null;

  const remember = () => {
    const q = new URLSearchParams();
    if (state.search) q.set('search', state.search);
    if (state.filter) q.set('filter', state.filter);
    if (state.sort !== 'id') q.set('sort', state.sort);
    if (state.desc) q.set('desc', 'true');
    if (state.limit !== 50) q.set('limit', String(state.limit));
    if (state.offset) q.set('offset', String(state.offset));
    const text = q.toString();
    history.replaceState(null, '', `#/fleet${text ? `?${text}` : ''}`);
  };

  const load = async () => {
    const mine = ++generation;
    pending?.abort();
    pending = new AbortController();
    signal.addEventListener('abort', () => pending.abort(), { once: true });
    view.removeAttribute('data-ready');
    remember();
    try {
      const page = await get(
        withQuery('/api/v1/devices', { ...state, desc: state.desc ? 'true' : '' }),
        pending.signal,
      );
      if (mine !== generation) return;
      error.hidden = true;
      replace(table, page.rows.length ? page.rows.map(row) : h('tr', null, h('td', { colspan: 6 }, t('fleet.none'))));
      const first = page.total ? state.offset + 1 : 0;
      const last = state.offset + page.rows.length;
      replace(status, t('fleet.showing', { first: number(first), last: number(last), total: number(page.total) }));
      previous.disabled = state.offset === 0;
      next.disabled = last >= page.total;
      view.setAttribute('data-ready', 'fleet');
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(error, t('error.load', { detail: e.message }));
      error.hidden = false;
    }
  };

  const search = h('input', {
    id: 'search',
    type: 'search',
    value: state.search,
    placeholder: t('fleet.search.placeholder'),
    'aria-label': t('fleet.search'),
    oninput: () => {
      clearTimeout(search.timer);
      search.timer = setTimeout(() => {
        state.search = search.value.trim();
        state.offset = 0;
        load();
      }, SEARCH_DELAY_MS);
    },
  });
  const choose = (id, label, options, selected, apply) =>
    h(
      'label',
      { class: 'inline' },
      label,
      ' ',
      h(
        'select',
        {
          id,
          onchange: (event) => {
            apply(event.target.value);
            state.offset = 0;
            load();
          },
        },
        options.map(([value, text]) => h('option', { value, selected: value === selected }, text)),
      ),
    );
  previous.addEventListener('click', () => {
    state.offset = Math.max(0, state.offset - state.limit);
    load();
  });
  next.addEventListener('click', () => {
    state.offset += state.limit;
    load();
  });

  replace(
    view,
    h('h1', null, t('fleet.title')),
    counts,
    h(
      'form',
      { class: 'toolbar', role: 'search', onsubmit: (event) => event.preventDefault() },
      search,
      choose('filter', t('fleet.filter'), FILTERS.map((f) => [f, t(`filter.${f || 'all'}`)]), state.filter, (v) => {
        state.filter = v;
      }),
      choose('sort', t('fleet.sort'), SORTS.map((s) => [s, t(`sort.${s}`)]), state.sort, (v) => {
        state.sort = v;
      }),
      h(
        'label',
        { class: 'inline' },
        h('input', {
          type: 'checkbox',
          id: 'desc',
          checked: state.desc,
          onchange: (event) => {
            state.desc = event.target.checked;
            state.offset = 0;
            load();
          },
        }),
        ' ',
        t('fleet.desc'),
      ),
      choose('limit', t('fleet.page_size'), PAGE_SIZES.map((n) => [String(n), String(n)]), String(state.limit), (v) => {
        state.limit = Number(v);
      }),
    ),
    error,
    h(
      'table',
      { class: 'grid' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          ['device', 'institution', 'state', 'last_seen', 'cert', 'alerts'].map((c) => h('th', { scope: 'col' }, t(`fleet.col.${c}`))),
        ),
      ),
      table,
    ),
    h('div', { class: 'pager' }, previous, status, next),
  );

  const countCard = async (filter) => {
    const page = await get(withQuery('/api/v1/devices', { filter, limit: 1 }), signal);
    return h(
      'a',
      {
        class: `count ${filter || 'all'}`,
        href: filter ? `#/fleet?filter=${filter}` : '#/fleet',
        'data-filter': filter || 'all',
      },
      h('span', { class: 'n' }, number(page.total)),
      h('span', { class: 'label' }, t(`filter.${filter || 'all'}`)),
    );
  };
  const [cards] = await Promise.all([Promise.all(FILTERS.map(countCard)), load()]);
  replace(counts, cards);
}

function row(device) {
  const days = daysLeft(device.cert_not_after);
  return h(
    'tr',
    { 'data-device': device.id },
    h('td', null, h('a', { href: href('device', device.id) }, device.id)),
    h('td', null, device.institution_code),
    h('td', null, stateChips(device)),
    h('td', null, ago(device.last_seen_ms)),
    h(
      'td',
      { class: days !== null && days < 30 ? 'warn' : null },
      device.cert_not_after ? `${dateOnly(device.cert_not_after * 1000)} (${t('days_left', { n: days })})` : '—',
    ),
    h('td', { class: device.open_alerts ? 'warn' : null }, number(device.open_alerts)),
  );
}

/** Up/down and suspended chips of a device row. */
export function stateChips(device) {
  return [
    h('span', { class: `chip ${device.state}` }, t(`state.${device.state}`)),
    device.suspension ? h('span', { class: 'chip suspended' }, t('state.suspended')) : null,
  ];
}
