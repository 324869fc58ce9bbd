// The alerts page (open alerts, or all with their history) and the alert
// table the device page shows too. Acknowledging (POST
// /api/v1/alerts/{id}/acknowledge, role operator and above) records who saw
// it; the row is redrawn from the server's answer, so what the page shows
// is what the server stored.

import { get, post, withQuery } from './api.js';
import { h, replace } from './dom.js';
import { t, dateTime, ago, explain } from './i18n.js';
import { href } from './app.js';

export async function renderAlerts(view, context) {
  const all = context.query.get('all') === 'true';
  const alerts = await get(withQuery('/api/v1/alerts', { all: all ? 'true' : '', limit: 500 }), context.signal);
  replace(
    view,
    h('h1', null, t('alerts.title')),
    h(
      'p',
      { class: 'toolbar' },
      h('a', { href: '#/alerts', class: all ? null : 'here', id: 'alerts-open' }, t('alerts.open')),
      ' · ',
      h('a', { href: '#/alerts?all=true', class: all ? 'here' : null, id: 'alerts-all' }, t('alerts.all')),
      ' ',
      h('span', { class: 'muted' }, t('alerts.count', { n: alerts.length })),
    ),
    alertTable(alerts, context, { showDevice: true }),
  );
}

/** A table of alerts with an acknowledge button where the role allows it. */
export function alertTable(alerts, { me }, { showDevice }) {
  if (!alerts.length) return h('p', { class: 'muted', id: 'no-alerts' }, t('alerts.none'));
  const columns = ['raised', showDevice ? 'device' : null, 'kind', 'level', 'message', 'ack'].filter(Boolean);
  return h(
    'table',
    { class: 'grid alerts' },
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, t(`alerts.col.${c}`))))),
    h(
      'tbody',
      null,
      alerts.map((alert) => alertRow(alert, me, showDevice)),
    ),
  );
}

function alertRow(alert, me, showDevice) {
  const tr = h('tr', {
    'data-alert': alert.id,
    class: `level-${alert.level}${alert.cleared_at_ms ? ' cleared' : ''}`,
  });
  return replace(
    tr,
    h('td', null, dateTime(alert.raised_at_ms), h('br'), h('span', { class: 'muted' }, ago(alert.raised_at_ms))),
    showDevice ? h('td', null, h('a', { href: href('device', alert.device_id) }, alert.device_id)) : null,
    h('td', null, h('code', null, alert.kind)),
    h('td', null, h('span', { class: `chip ${alert.level}` }, t(`level.${alert.level}`))),
    h('td', null, alert.message, alert.cleared_at_ms ? h('div', { class: 'muted' }, t('alerts.cleared', { at: dateTime(alert.cleared_at_ms) })) : null),
    h('td', { class: 'ack' }, acknowledgement(alert, me, tr, showDevice)),
  );
}

function acknowledgement(alert, me, tr, showDevice) {
  if (alert.acknowledged_at_ms) {
    return h('span', { class: 'acked' }, t('alerts.acked', { by: alert.acknowledged_by ?? '—', at: dateTime(alert.acknowledged_at_ms) }));
  }
  if (!me.may.acknowledge_alert) return h('span', { class: 'muted' }, t('role.needs', { role: t('role.operator') }));
  const message = h('span', { class: 'error', role: 'alert' });
  const button = h(
    'button',
    {
      type: 'button',
      class: 'acknowledge',
      onclick: async () => {
        button.disabled = true;
        try {
          const updated = await post(`/api/v1/alerts/${alert.id}/acknowledge`);
          tr.replaceWith(alertRow(updated, me, showDevice));
        } catch (error) {
          replace(message, explain(error));
          button.disabled = false;
        }
      },
    },
    t('alerts.acknowledge'),
  );
  return [button, ' ', message];
}
