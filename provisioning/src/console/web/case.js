// A §2.2 compliance case: the trail ① fact → ② hearing → ③ report to the
// platform operator → ④ recommendation with a deadline → ⑤ check → ⑥
// stop → ⑦ the institution is told (the device's notice page), then the
// resume; the countdown to the recommendation's deadline; and, for the
// `compliance` role, each step as a form. The server checks the flow and
// the role (409 / 403, shown in words); this page only shows and asks.

import { get, post, segment } from './api.js';
import { h, replace } from './dom.js';
import { t, dateTime, duration, explain } from './i18n.js';
import { href, go } from './app.js';
import { orders, stopResume } from './device.js';

const FLOW = ['fact', 'hearing', 'report', 'recommend', 'check', 'stop', 'notify', 'resume'];

export async function renderCase(view, context) {
  if (!context.id) {
    renderFinder(view);
    return;
  }
  const detail = await get(`/api/v1/cases/${segment(context.id)}`, context.signal);
  const steps = new Set(detail.events.map((e) => (e.step === 'hearing-skipped' ? 'hearing' : e.step)));
  if (steps.has('stop')) steps.add('notify');
  const closed = steps.has('resume');
  const recommendation = detail.events.filter((e) => e.step === 'recommend').at(-1);
  const checkedAfter = recommendation && detail.events.some((e) => e.step === 'check' && e.id > recommendation.id);
  const countdown = h('p', { id: 'countdown', class: 'countdown', 'aria-live': 'off' });
  if (recommendation?.deadline_ms && !closed && !checkedAfter) {
    const tick = () => {
      const left = recommendation.deadline_ms - Date.now();
      countdown.className = `countdown ${left < 0 ? 'overdue' : left < 24 * 3600 * 1000 ? 'soon' : ''}`;
      replace(
        countdown,
        left >= 0
          ? t('case.deadline_left', { left: duration(left), at: dateTime(recommendation.deadline_ms) })
          : t('case.deadline_over', { over: duration(-left), at: dateTime(recommendation.deadline_ms) }),
      );
    };
    tick();
    const timer = setInterval(tick, 1000);
    context.onLeave(() => clearInterval(timer));
  } else if (recommendation?.deadline_ms) {
    replace(countdown, t('case.deadline_done', { at: dateTime(recommendation.deadline_ms) }));
  } else {
    replace(countdown, t('case.no_deadline'));
  }
  replace(
    view,
    h('h1', null, t('case.title', { id: detail.case.id })),
    h(
      'p',
      null,
      t('case.device'),
      ' ',
      h('a', { href: href('device', detail.case.device_id) }, detail.case.device_id),
      ' · ',
      t('case.opened', { at: dateTime(detail.case.opened_at_ms) }),
      ' · ',
      h('span', { class: `chip ${closed ? 'up' : 'open'}` }, t(closed ? 'case.closed' : 'case.open_state')),
    ),
    h(
      'ol',
      { class: 'flow', id: 'flow' },
      FLOW.map((step) => h('li', { class: steps.has(step) ? 'done' : null, 'data-step': step }, t(`flow.${step}`))),
    ),
    countdown,
    h('section', { class: 'panel' }, h('h2', null, t('case.trail')), trail(detail.events)),
    h('section', { class: 'panel' }, h('h2', null, t('case.orders')), orders(detail.orders)),
    h('section', { class: 'panel', id: 'case-steps' }, h('h2', null, t('case.steps')), stepForms(detail, context)),
  );
}

function renderFinder(view) {
  const number = h('input', { id: 'case-number', type: 'number', min: 1, required: true });
  replace(
    view,
    h('h1', null, t('case.find')),
    h(
      'form',
      {
        class: 'panel narrow',
        onsubmit: (event) => {
          event.preventDefault();
          go('case', number.value);
        },
      },
      h('label', { for: 'case-number' }, t('case.number')),
      number,
      h('button', { type: 'submit' }, t('case.show')),
      h('p', { class: 'muted' }, t('case.find_hint')),
    ),
  );
}

function trail(events) {
  return h(
    'ol',
    { class: 'trail', id: 'trail' },
    events.map((e) =>
      h(
        'li',
        { 'data-step': e.step },
        h('strong', null, t(`step.${e.step}`)),
        ' ',
        h('span', { class: 'muted' }, t('case.by', { at: dateTime(e.at_ms), operator: e.operator })),
        h('div', null, e.text),
        e.recipient ? h('div', null, t('case.recipient', { to: e.recipient })) : null,
        e.deadline_ms ? h('div', null, t('case.deadline', { at: dateTime(e.deadline_ms) })) : null,
        e.corrected === null || e.corrected === undefined ? null : h('div', null, t(e.corrected ? 'case.corrected' : 'case.not_corrected')),
        e.justification ? h('div', null, t('case.justification', { text: e.justification })) : null,
        e.order_id ? h('div', null, t('case.order', { id: e.order_id })) : null,
      ),
    ),
  );
}

/** One form per step for the compliance role; a note for the others. */
function stepForms(detail, context) {
  const { me, refresh } = context;
  if (!me.may.case_step) return h('p', { class: 'note', id: 'steps-role' }, t('case.compliance_only', { role: t(`role.${me.role}`) }));
  const id = detail.case.id;
  const device = detail.case.device_id;
  const field = (name, label, attrs = {}) => {
    const input = h(attrs.rows ? 'textarea' : 'input', { id: `step-${name}`, name, ...attrs });
    return [h('label', { for: `step-${name}` }, label), input];
  };
  const form = (step, title, fields, toBody, path = `/api/v1/cases/${id}/${step}`) => {
    const message = h('p', { role: 'alert', hidden: true });
    const element = h(
      'form',
      {
        class: 'step',
        'data-step': step,
        onsubmit: async (event) => {
          event.preventDefault();
          message.hidden = true;
          const values = Object.fromEntries(new FormData(element).entries());
          try {
            await post(path, toBody(values));
            refresh();
          } catch (error) {
            replace(message, explain(error));
            message.className = 'error refusal';
            message.hidden = false;
          }
        },
      },
      h('h3', null, title),
      fields,
      h('button', { type: 'submit' }, t('case.record')),
      message,
    );
    return element;
  };
  const text = (v) => (v ?? '').trim();
  const optional = (v) => (text(v) ? text(v) : undefined);
  return [
    form(
      'hearing',
      t('flow.hearing'),
      [field('summary', t('case.f.summary'), { rows: 2 }), field('skip', t('case.f.skip'), { rows: 2 })],
      (v) => (text(v.skip) ? { skip_urgent_justification: text(v.skip) } : { summary: text(v.summary) }),
    ),
    form('report', t('flow.report'), [field('to', t('case.f.to')), field('text', t('case.f.text'), { rows: 2 })], (v) => ({
      to: text(v.to),
      text: text(v.text),
    })),
    form(
      'recommend',
      t('flow.recommend'),
      [
        field('deadline', t('case.f.deadline'), { type: 'datetime-local', required: true }),
        field('text_ja', t('case.f.text_ja'), { lang: 'ja' }),
        field('text_en', t('case.f.text_en'), { lang: 'en' }),
      ],
      (v) => ({
        deadline: v.deadline ? new Date(v.deadline).toISOString().replace(/\.\d{3}Z$/, 'Z') : '',
        text_ja: optional(v.text_ja),
        text_en: optional(v.text_en),
      }),
    ),
    form(
      'check',
      t('flow.check'),
      [
        h(
          'fieldset',
          null,
          h('legend', null, t('case.f.corrected')),
          h('label', { class: 'inline' }, h('input', { type: 'radio', name: 'corrected', value: 'true', required: true }), ' ', t('case.corrected')),
          h('label', { class: 'inline' }, h('input', { type: 'radio', name: 'corrected', value: 'false' }), ' ', t('case.not_corrected')),
        ),
        field('note', t('case.f.note'), { rows: 2 }),
      ],
      (v) => ({ corrected: v.corrected === 'true', note: text(v.note) }),
    ),
    h('h3', null, t('flow.stop'), ' / ', t('flow.resume')),
    stopResume({ id: device }, context),
  ];
}
