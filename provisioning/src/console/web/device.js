// One device: its state, certificate expiry, CPU/memory and per-line
// bandwidth graphs over the last 24 hours, open alerts (acknowledge), the
// last self-diagnosis check by check with its verdict and hint, commands
// (remote diagnosis), orders with their receipts, its latest §2.2 case,
// and the stop / resume order form (the server signs only for the
// `compliance` role and refuses the others with 403, shown in words).

import { get, post, segment } from './api.js';
import { h, replace } from './dom.js';
import { t, pick, ago, dateTime, dateOnly, daysLeft, explain, lang } from './i18n.js';
import { deviceGraphs } from './graph.js';
import { alertTable } from './alerts.js';
import { stateChips } from './fleet.js';
import { href } from './app.js';

const DAY_MS = 24 * 60 * 60 * 1000;

function parseJson(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export async function renderDevice(view, context) {
  const { id, signal } = context;
  if (!id) {
    replace(view, h('p', { class: 'error' }, t('device.none')));
    return;
  }
  const path = `/api/v1/devices/${segment(id)}`;
  const [detail, series, latestCase] = await Promise.all([
    get(path, signal),
    get(`${path}/series?hours=24`, signal),
    get(`${path}/case`, signal).catch((error) => {
      if (error.status === 404) return null;
      throw error;
    }),
  ]);
  const now = Date.now();
  const health = parseJson(detail.row.last_health);
  replace(
    view,
    h('h1', null, t('device.title', { id: detail.row.id }), ' ', stateChips(detail.row)),
    facts(detail, health),
    section('graphs', t('device.graphs'), deviceGraphs(series, now - DAY_MS, now)),
    section('alerts', t('device.alerts'), alertTable(detail.open_alerts, context, { showDevice: false })),
    section('diagnosis', t('device.diagnosis'), diagnosis(detail, context)),
    section('commands', t('device.commands'), commands(detail)),
    section('orders', t('device.orders'), orders(detail.recent_orders)),
    section('case', t('device.case'), caseSummary(detail.row.id, latestCase, context)),
    section('stop', t('device.stop_resume'), stopResume(detail.row, context)),
  );
}

function section(name, title, ...content) {
  return h('section', { id: `device-${name}`, class: 'panel' }, h('h2', null, title), content);
}

function facts(detail, health) {
  const row = detail.row;
  const days = daysLeft(row.cert_not_after);
  const item = (label, value, cls) => [h('dt', null, label), h('dd', { class: cls ?? null }, value)];
  return h(
    'dl',
    { class: 'facts', id: 'device-facts' },
    item(t('device.institution'), row.institution_code),
    item(t('device.state'), t('device.state_since', { state: t(`state.${row.state}`), since: dateTime(row.state_since_ms) })),
    item(t('device.last_seen'), `${dateTime(row.last_seen_ms)} (${ago(row.last_seen_ms)})`),
    item(t('device.first_seen'), dateTime(row.first_seen_ms)),
    item(
      t('device.cert'),
      row.cert_not_after ? `${dateOnly(row.cert_not_after * 1000)} (${t('days_left', { n: days })})` : t('unknown'),
      days !== null && days < 30 ? 'warn' : null,
    ),
    item(t('device.suspension'), row.suspension ? t('device.suspended', { detail: row.suspension }) : t('device.not_suspended')),
    health ? item(t('device.uplink'), health.active_uplink ?? t('device.no_uplink')) : null,
    health ? item(t('device.agent'), health.agent_version ?? t('unknown')) : null,
  );
}

/** The latest diagnosis, check by check, with its verdict and hint. */
function diagnosis(detail, context) {
  const incident = detail.latest_incident;
  const run = h('p', null, commandButton(detail.row.id, 'diagnose', t('device.run_diagnosis'), context));
  if (!incident) return [h('p', { class: 'muted' }, t('device.no_diagnosis')), run];
  const report = parseJson(incident.report_json);
  const checks = report?.checks ?? [];
  const verdictSegment = report?.verdict?.segment ?? incident.segment;
  return [
    h(
      'div',
      { class: `verdict ${verdictSegment === 'none' ? 'ok' : 'fault'}`, id: 'verdict' },
      h('p', null, h('strong', null, t('diag.verdict')), ' ', t(`segment.${verdictSegment}`)),
      h('p', { class: 'summary' }, report?.verdict?.summary ?? incident.summary),
      report?.verdict?.hint ? h('p', { class: 'hint' }, t('diag.hint'), ' ', report.verdict.hint) : null,
      h('p', { class: 'muted' }, t('diag.when', { at: dateTime(incident.recorded_at_ms), id: incident.incident_id })),
    ),
    h(
      'table',
      { class: 'grid', id: 'checks' },
      h('thead', null, h('tr', null, ['status', 'segment', 'check', 'evidence', 'time'].map((c) => h('th', { scope: 'col' }, t(`diag.col.${c}`))))),
      h(
        'tbody',
        null,
        checks.map((c) =>
          h(
            'tr',
            { class: `check is-${c.status}`, 'data-check': c.name },
            h('td', null, h('span', { class: `chip ${c.status}` }, t(`check.${c.status}`))),
            h('td', null, t(`segment.${c.segment}`)),
            h('td', null, h('code', null, c.name)),
            h('td', { class: 'evidence' }, pick(c.evidence?.text)),
            h('td', { class: 'num' }, `${c.duration_ms} ms`),
          ),
        ),
      ),
    ),
    run,
  ];
}

/** A button that queues `kind` for the device (role operator and above). */
function commandButton(device, kind, label, { me, refresh }) {
  if (!me.may.queue_command) return h('span', { class: 'muted' }, t('role.needs', { role: t('role.operator') }));
  const message = h('span', { class: 'note', role: 'status' });
  const button = h(
    'button',
    {
      type: 'button',
      'data-command': kind,
      onclick: async () => {
        button.disabled = true;
        try {
          const queued = await post(`/api/v1/devices/${segment(device)}/commands`, { kind });
          replace(message, t('device.queued', { id: queued.command_id }));
          setTimeout(refresh, 1500);
        } catch (error) {
          replace(message, explain(error));
          message.className = 'error';
        } finally {
          button.disabled = false;
        }
      },
    },
    label,
  );
  return [button, ' ', message];
}

function commands(detail) {
  if (!detail.recent_commands.length) return h('p', { class: 'muted' }, t('device.no_commands'));
  const state = (c) => (c.acked_at_ms ? (c.ok ? 'done' : 'failed') : c.delivered_at_ms ? 'delivered' : 'queued');
  return h(
    'table',
    { class: 'grid' },
    h('thead', null, h('tr', null, ['id', 'kind', 'state', 'queued', 'by'].map((c) => h('th', { scope: 'col' }, t(`cmd.col.${c}`))))),
    h(
      'tbody',
      null,
      detail.recent_commands.map((c) =>
        h(
          'tr',
          null,
          h('td', { class: 'num' }, c.id),
          h('td', null, h('code', null, c.kind)),
          h('td', null, t(`cmd.${state(c)}`)),
          h('td', null, dateTime(c.created_at_ms)),
          h('td', null, c.requested_by ?? '—'),
        ),
      ),
    ),
  );
}

/** `queued` → `delivered` → `applied` / `refused` (as the CLI shows it). */
export function orderState(o) {
  if (o.outcome === 'applied') return 'applied';
  if (o.outcome) return 'refused';
  return o.delivered_at_ms ? 'delivered' : 'queued';
}

/** Orders with their delivery and the device's receipt. */
export function orders(list) {
  if (!list.length) return h('p', { class: 'muted' }, t('device.no_orders'));
  return h(
    'table',
    { class: 'grid', id: 'orders' },
    h(
      'thead',
      null,
      h('tr', null, ['id', 'kind', 'seq', 'state', 'issued', 'expires', 'reason', 'by', 'receipt'].map((c) => h('th', { scope: 'col' }, t(`order.col.${c}`)))),
    ),
    h(
      'tbody',
      null,
      list.map((o) =>
        h(
          'tr',
          { 'data-order': o.id },
          h('td', { class: 'num' }, o.id),
          h('td', null, t(`order.kind.${o.kind}`)),
          h('td', { class: 'num' }, o.sequence),
          h('td', null, h('span', { class: `chip ${orderState(o)}` }, t(`order.${orderState(o)}`))),
          h('td', null, dateTime(o.issued_at * 1000)),
          h('td', null, dateTime(o.expires_at * 1000)),
          h('td', null, lang() === 'ja' ? o.reason_ja : o.reason_en),
          h('td', null, o.operator),
          h('td', null, receipt(o)),
        ),
      ),
    ),
  );
}

function receipt(o) {
  if (o.receipt) {
    return t('order.receipt', {
      at: dateTime(o.receipt.applied_at * 1000),
      state: t(`service.${o.receipt.resulting_state}`),
      clock: t(`clock.${o.receipt.clock}`),
    });
  }
  if (o.outcome) return t('order.refused_detail', { detail: o.detail ?? '—' });
  return '—';
}

function caseSummary(device, latest, { me }) {
  const out = [];
  if (latest) {
    const last = latest.events.at(-1);
    out.push(
      h(
        'p',
        null,
        h('a', { href: href('case', String(latest.case.id)), id: 'case-link' }, t('case.link', { id: latest.case.id })),
        ' ',
        last ? t('case.last_step', { step: t(`step.${last.step}`), at: dateTime(last.at_ms) }) : null,
      ),
    );
  } else {
    out.push(h('p', { class: 'muted' }, t('device.no_case')));
  }
  if (me.may.case_step && (!latest || latest.events.at(-1)?.step === 'resume')) {
    const fact = h('textarea', { id: 'case-fact', required: true, rows: 2 });
    const message = h('p', { class: 'note', role: 'status' });
    out.push(
      h(
        'form',
        {
          class: 'step',
          onsubmit: async (event) => {
            event.preventDefault();
            try {
              const opened = await post('/api/v1/cases', { device, fact: fact.value.trim() });
              location.hash = href('case', String(opened.case_id));
            } catch (error) {
              replace(message, explain(error));
              message.className = 'error';
            }
          },
        },
        h('label', { for: 'case-fact' }, t('case.open.fact')),
        fact,
        h('button', { type: 'submit' }, t('case.open')),
        message,
      ),
    );
  }
  return out;
}

/** The stop / resume form: offered to every role, signed only for compliance. */
export function stopResume(row, { me, refresh }) {
  const reasonJa = h('input', { id: 'order-reason-ja', name: 'reason_ja', lang: 'ja' });
  const reasonEn = h('input', { id: 'order-reason-en', name: 'reason_en', lang: 'en' });
  const justification = h('input', { id: 'order-justification', name: 'justification' });
  const message = h('p', { id: 'order-message', role: 'alert', hidden: true });
  const send = (kind) => async (event) => {
    event.preventDefault();
    message.hidden = true;
    const body = { device: row.id };
    if (reasonJa.value.trim()) body.reason_ja = reasonJa.value.trim();
    if (reasonEn.value.trim()) body.reason_en = reasonEn.value.trim();
    if (justification.value.trim()) body.justification = justification.value.trim();
    try {
      await post(`/api/v1/orders/${kind}`, body);
      replace(message, t(`order.${kind}_issued`));
      message.className = 'ok';
      message.hidden = false;
      setTimeout(refresh, 1500);
    } catch (error) {
      replace(message, explain(error));
      message.className = 'error refusal';
      message.setAttribute('data-status', String(error.status));
      message.hidden = false;
    }
  };
  return h(
    'form',
    { id: 'order-form', class: 'step', onsubmit: send('stop') },
    me.may.sign_order ? null : h('p', { class: 'note' }, t('order.compliance_only', { role: t(`role.${me.role}`) })),
    h('p', { class: 'muted' }, t('order.explain')),
    h('label', { for: 'order-reason-ja' }, t('order.reason_ja')),
    reasonJa,
    h('label', { for: 'order-reason-en' }, t('order.reason_en')),
    reasonEn,
    h('label', { for: 'order-justification' }, t('order.justification')),
    justification,
    h(
      'div',
      { class: 'buttons' },
      h('button', { type: 'submit', id: 'stop', class: 'danger' }, t('order.stop')),
      h('button', { type: 'button', id: 'resume', onclick: send('resume') }, t('order.resume')),
    ),
    message,
  );
}
