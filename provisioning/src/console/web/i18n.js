// Every word the console shows, in Japanese (first) and English, and the
// formatting of times, rates and counts in the chosen language. The
// choice is kept in localStorage; Japanese unless English was chosen.
//
// STRINGS maps a key to [日本語, English]; `{name}` is replaced by
// t(key, { name }). A key missing here shows as ⚠key and is reported on
// the browser console (the browser test fails on it).

const STORAGE_KEY = 'cpe-console-lang';

export const STRINGS = {
  brand: ['CPE 運用コンソール', 'CPE operations console'],
  'nav.label': ['メニュー', 'Menu'],
  'nav.fleet': ['機器一覧', 'Fleet'],
  'nav.alerts': ['アラート', 'Alerts'],
  'nav.case': ['是正対応', 'Cases'],
  who: ['{name}（{role}）', '{name} ({role})'],
  'lang.switch': ['English', '日本語'],
  logout: ['ログアウト', 'Sign out'],
  unknown: ['不明', 'unknown'],
  days_left: ['残り {n} 日', '{n} days left'],
  'error.load': ['読み込めませんでした: {detail}', 'Could not load: {detail}'],

  'role.viewer': ['閲覧者 (viewer)', 'viewer'],
  'role.operator': ['運用者 (operator)', 'operator'],
  'role.compliance': ['コンプライアンス担当 (compliance)', 'compliance'],
  'role.needs': ['{role} 以上が操作できます', 'needs the {role} role'],

  'refusal.unauthenticated': ['サインインが必要です。もう一度サインインしてください。', 'You are not signed in. Please sign in again.'],
  'refusal.forbidden': [
    '権限がないため実行できませんでした。この操作は {required} のロールが必要です（あなたのロール: {role}）。必要なら {required} の担当者に依頼してください。',
    'Refused: you are not allowed to do this. It needs the {required} role (yours: {role}). Ask someone with the {required} role if it must be done.',
  ],
  'refusal.cross_origin': ['このページ以外からの操作は受け付けません。ページを開き直してください。', 'Changes are accepted only from the console itself. Reload the page.'],
  'refusal.bad_request': ['入力が正しくありません: {detail}', 'The input was not accepted: {detail}'],
  'refusal.not_found': ['見つかりませんでした: {detail}', 'Not found: {detail}'],
  'refusal.refused': ['手続きの順序に合わないため記録しませんでした: {detail}', 'Not recorded: the §2.2 flow does not allow this step now: {detail}'],
  'refusal.order_keys': ['命令に署名できません（サーバーに命令鍵がありません）: {detail}', 'Orders cannot be signed (the server has no order keys): {detail}'],
  'refusal.unavailable': ['サーバーが一時的に応答できません。少し待ってからやり直してください。', 'The server is briefly unavailable. Try again in a moment.'],
  'refusal.network': ['サーバーに接続できませんでした。ネットワークを確認してください。', 'Could not reach the server. Check the network.'],
  'refusal.other': ['実行できませんでした（HTTP {status}）: {detail}', 'Failed (HTTP {status}): {detail}'],
  'refusal.nothing_changed': ['何も変更されていません。', 'Nothing was changed.'],

  'login.title': ['サインイン', 'Sign in'],
  'login.intro': ['運用者の名前とパスワードを入力してください。', 'Enter your operator name and password.'],
  'login.name': ['名前', 'Name'],
  'login.password': ['パスワード', 'Password'],
  'login.submit': ['サインイン', 'Sign in'],
  'login.bad': ['名前またはパスワードが違います。', 'Wrong name or password.'],

  'fleet.title': ['機器一覧', 'Fleet'],
  'fleet.search': ['検索', 'Search'],
  'fleet.search.placeholder': ['医療機関コード・機器名で検索', 'Search by institution code or device name'],
  'fleet.filter': ['状態', 'State'],
  'fleet.sort': ['並び順', 'Sort by'],
  'fleet.desc': ['降順', 'Descending'],
  'fleet.page_size': ['表示件数', 'Per page'],
  'fleet.previous': ['前へ', 'Previous'],
  'fleet.next': ['次へ', 'Next'],
  'fleet.none': ['該当する機器はありません。', 'No device matches.'],
  'fleet.showing': ['{total} 台中 {first}–{last} 台目', '{first}–{last} of {total}'],
  'fleet.col.device': ['機器', 'Device'],
  'fleet.col.institution': ['医療機関コード', 'Institution code'],
  'fleet.col.state': ['状態', 'State'],
  'fleet.col.last_seen': ['最終受信', 'Last report'],
  'fleet.col.cert': ['証明書の有効期限', 'Certificate expiry'],
  'fleet.col.alerts': ['未解消アラート', 'Open alerts'],
  'filter.all': ['すべて', 'All'],
  'filter.up': ['稼働中', 'Up'],
  'filter.down': ['応答なし', 'Down'],
  'filter.suspended': ['停止中', 'Suspended'],
  'filter.alerting': ['アラートあり', 'Alerting'],
  'sort.id': ['機器 ID', 'Device id'],
  'sort.last_seen': ['最終受信', 'Last report'],
  'sort.cert_not_after': ['証明書の有効期限', 'Certificate expiry'],
  'sort.state': ['状態', 'State'],
  'state.up': ['稼働中', 'up'],
  'state.down': ['応答なし', 'down'],
  'state.suspended': ['停止中', 'suspended'],

  'device.none': ['機器が指定されていません。', 'No device given.'],
  'device.title': ['機器 {id}', 'Device {id}'],
  'device.institution': ['医療機関コード', 'Institution code'],
  'device.state': ['状態', 'State'],
  'device.state_since': ['{state}（{since} から）', '{state} (since {since})'],
  'device.last_seen': ['最終受信', 'Last report'],
  'device.first_seen': ['初回受信', 'First report'],
  'device.cert': ['証明書の有効期限', 'Certificate expiry'],
  'device.suspension': ['サービス停止', 'Suspension'],
  'device.suspended': ['停止中: {detail}', 'suspended: {detail}'],
  'device.not_suspended': ['なし', 'none'],
  'device.uplink': ['使用中の回線', 'Active uplink'],
  'device.no_uplink': ['なし（既定経路なし）', 'none (no default route)'],
  'device.agent': ['エージェント版', 'Agent version'],
  'device.graphs': ['過去 24 時間', 'Last 24 hours'],
  'device.alerts': ['未解消のアラート', 'Open alerts'],
  'device.diagnosis': ['最新の自己診断', 'Latest self-diagnosis'],
  'device.no_diagnosis': ['自己診断の結果はまだありません。', 'No self-diagnosis result yet.'],
  'device.run_diagnosis': ['遠隔診断を依頼', 'Request a remote diagnosis'],
  'device.queued': ['依頼しました（コマンド {id}）。機器が次に接続したときに届きます。', 'Queued (command {id}); the device gets it on its next poll.'],
  'device.commands': ['コマンド', 'Commands'],
  'device.no_commands': ['コマンドはありません。', 'No commands.'],
  'device.orders': ['命令と受領証', 'Orders and receipts'],
  'device.no_orders': ['命令はありません。', 'No orders.'],
  'device.case': ['是正対応（§2.2）', 'Compliance case (§2.2)'],
  'device.no_case': ['この機器の是正対応の記録はありません。', 'This device has no compliance case.'],
  'device.stop_resume': ['サービスの停止・再開', 'Stop or resume the service'],

  'graph.resources': ['CPU・メモリ使用率', 'CPU and memory use'],
  'graph.cpu': ['CPU', 'CPU'],
  'graph.mem': ['メモリ', 'Memory'],
  'graph.line': ['回線 {name} の帯域', 'Bandwidth of line {name}'],
  'graph.rx': ['受信', 'Receive'],
  'graph.tx': ['送信', 'Transmit'],
  'graph.empty': ['この期間のデータはありません。', 'No data in this period.'],

  'diag.verdict': ['判定:', 'Verdict:'],
  'diag.hint': ['対処:', 'What to do:'],
  'diag.when': ['{at} 実施（{id}）', 'Run at {at} ({id})'],
  'diag.col.status': ['結果', 'Result'],
  'diag.col.segment': ['区間', 'Segment'],
  'diag.col.check': ['確認項目', 'Check'],
  'diag.col.evidence': ['根拠', 'Evidence'],
  'diag.col.time': ['所要時間', 'Time'],
  'check.ok': ['正常', 'ok'],
  'check.warning': ['注意', 'warning'],
  'check.failed': ['異常', 'failed'],
  'check.skipped': ['未実施', 'skipped'],
  'segment.terminal': ['端末', 'terminal'],
  'segment.lan': ['院内 LAN', 'LAN'],
  'segment.device': ['ネットワーク機器', 'network device'],
  'segment.uplink': ['アクセス回線', 'access line'],
  'segment.carrier': ['通信事業者網', 'carrier network'],
  'segment.none': ['異常なし', 'no fault found'],
  'segment.suspended': ['サービス停止中', 'service suspended'],

  'cmd.col.id': ['番号', 'Id'],
  'cmd.col.kind': ['種類', 'Kind'],
  'cmd.col.state': ['状態', 'State'],
  'cmd.col.queued': ['依頼日時', 'Queued'],
  'cmd.col.by': ['依頼者', 'By'],
  'cmd.queued': ['送信待ち', 'queued'],
  'cmd.delivered': ['配信済み', 'delivered'],
  'cmd.done': ['完了', 'done'],
  'cmd.failed': ['失敗', 'failed'],

  'order.col.id': ['番号', 'Id'],
  'order.col.kind': ['種類', 'Kind'],
  'order.col.seq': ['通番', 'Seq.'],
  'order.col.state': ['状態', 'State'],
  'order.col.issued': ['発行', 'Issued'],
  'order.col.expires': ['有効期限', 'Expires'],
  'order.col.reason': ['理由', 'Reason'],
  'order.col.by': ['発行者', 'By'],
  'order.col.receipt': ['受領証', 'Receipt'],
  'order.kind.stop': ['停止', 'stop'],
  'order.kind.resume': ['再開', 'resume'],
  'order.kind.notice': ['是正勧告の通知', 'notice'],
  'order.kind.key_rotation': ['鍵の更新', 'key rotation'],
  'order.kind.drill': ['訓練', 'drill'],
  'order.queued': ['送信待ち', 'queued'],
  'order.delivered': ['配信済み', 'delivered'],
  'order.applied': ['適用済み', 'applied'],
  'order.refused': ['機器が拒否', 'refused by the device'],
  'order.receipt': ['{at} 適用 · 状態 {state} · 時刻 {clock}', 'applied {at} · state {state} · clock {clock}'],
  'order.refused_detail': ['拒否理由: {detail}', 'refused: {detail}'],
  'service.normal': ['通常', 'normal'],
  'service.recommendation': ['是正勧告中', 'recommendation'],
  'service.suspended': ['停止中', 'suspended'],
  'service.drill': ['訓練', 'drill'],
  'clock.trusted': ['信頼できる', 'trusted'],
  'clock.untrusted': ['未確認', 'untrusted'],
  'order.explain': [
    '停止命令は医療機関の通信を止めます（管理通信・院内 DHCP/DNS・お知らせページは残ります）。理由は機器のお知らせページに表示されます。',
    'A stop order cuts the institution’s traffic (the management channel, LAN DHCP/DNS and the notice page stay). The reason is shown on the device’s notice page.',
  ],
  'order.compliance_only': [
    '命令に署名できるのはコンプライアンス担当（compliance）だけです。あなたのロール（{role}）で送信するとサーバーが拒否します。',
    'Only the compliance role can have an order signed; sent with your role ({role}), the server refuses it.',
  ],
  'order.reason_ja': ['理由（日本語）', 'Reason (Japanese)'],
  'order.reason_en': ['理由（英語）', 'Reason (English)'],
  'order.justification': ['緊急の理由・根拠（ヒアリング前の停止、是正確認前の再開）', 'Justification (a stop before the hearing, a resume before a confirmed correction)'],
  'order.stop': ['停止命令を出す', 'Issue a stop order'],
  'order.resume': ['再開命令を出す', 'Issue a resume order'],
  'order.stop_issued': ['停止命令を発行しました。機器が次に接続したときに適用されます。', 'Stop order issued; the device applies it on its next poll.'],
  'order.resume_issued': ['再開命令を発行しました。', 'Resume order issued.'],

  'alerts.title': ['アラート', 'Alerts'],
  'alerts.open': ['未解消', 'Open'],
  'alerts.all': ['すべて（解消済みを含む）', 'All (including cleared)'],
  'alerts.count': ['{n} 件', '{n} alerts'],
  'alerts.none': ['アラートはありません。', 'No alerts.'],
  'alerts.col.raised': ['発生', 'Raised'],
  'alerts.col.device': ['機器', 'Device'],
  'alerts.col.kind': ['種類', 'Kind'],
  'alerts.col.level': ['レベル', 'Level'],
  'alerts.col.message': ['内容', 'Message'],
  'alerts.col.ack': ['確認', 'Acknowledged'],
  'alerts.acknowledge': ['確認済みにする', 'Acknowledge'],
  'alerts.acked': ['{by} が確認（{at}）', 'acknowledged by {by} ({at})'],
  'alerts.cleared': ['{at} に解消', 'cleared {at}'],
  'level.info': ['情報', 'info'],
  'level.caution': ['注意', 'caution'],
  'level.warning': ['警告', 'warning'],
  'level.critical': ['重大', 'critical'],

  'case.find': ['是正対応', 'Compliance cases'],
  'case.number': ['案件番号', 'Case number'],
  'case.show': ['表示', 'Show'],
  'case.find_hint': ['各機器のページから、その機器の最新の案件を開くこともできます。', 'Each device page also links to the device’s latest case.'],
  'case.title': ['是正対応 案件 {id}', 'Compliance case {id}'],
  'case.device': ['機器', 'Device'],
  'case.opened': ['{at} 開始', 'opened {at}'],
  'case.closed': ['終了', 'closed'],
  'case.open_state': ['対応中', 'open'],
  'case.trail': ['経過（§2.2）', 'Trail (§2.2)'],
  'case.orders': ['この案件の命令', 'Orders of this case'],
  'case.steps': ['手続きの記録', 'Record a step'],
  'case.record': ['記録する', 'Record'],
  'case.compliance_only': [
    '手続きを記録できるのはコンプライアンス担当（compliance）だけです。あなたのロール: {role}',
    'Only the compliance role can record steps. Your role: {role}',
  ],
  'case.by': ['{at} · {operator}', '{at} · {operator}'],
  'case.recipient': ['報告先: {to}', 'Reported to: {to}'],
  'case.deadline': ['是正期限: {at}', 'Deadline: {at}'],
  'case.corrected': ['是正されている', 'corrected'],
  'case.not_corrected': ['是正されていない', 'not corrected'],
  'case.justification': ['根拠: {text}', 'Justification: {text}'],
  'case.order': ['命令 {id}', 'Order {id}'],
  'case.link': ['案件 {id}', 'Case {id}'],
  'case.last_step': ['最新: {step}（{at}）', 'latest: {step} ({at})'],
  'case.open': ['案件を開始', 'Open a case'],
  'case.open.fact': ['① 確認した事実', '① The fact found'],
  'case.deadline_left': ['是正期限まで あと {left}（{at}）', 'Deadline in {left} ({at})'],
  'case.deadline_over': ['是正期限を {over} 過ぎています（{at}）。⑤ 確認を記録してください。', 'The deadline passed {over} ago ({at}). Record ⑤ the check.'],
  'case.deadline_done': ['是正期限 {at}（確認済み）', 'Deadline {at} (checked)'],
  'case.no_deadline': ['是正期限はまだ設定されていません（④ 是正勧告で設定）。', 'No deadline yet (set by ④ the recommendation).'],
  'case.f.summary': ['② ヒアリングの内容', '② What the institution said'],
  'case.f.skip': ['または: 緊急のためヒアリングを省略する理由', 'or: why the hearing is skipped as urgent'],
  'case.f.to': ['報告先', 'Reported to'],
  'case.f.text': ['報告内容', 'Report'],
  'case.f.deadline': ['是正期限', 'Deadline'],
  'case.f.text_ja': ['勧告文（日本語）', 'Recommendation (Japanese)'],
  'case.f.text_en': ['勧告文（英語）', 'Recommendation (English)'],
  'case.f.corrected': ['期限後の確認結果', 'Result of the check after the deadline'],
  'case.f.note': ['確認の記録', 'Note'],
  'flow.fact': ['① 事実の確認', '① Fact'],
  'flow.hearing': ['② ヒアリング', '② Hearing'],
  'flow.report': ['③ 基盤運営者への報告', '③ Report to the platform operator'],
  'flow.recommend': ['④ 是正勧告（期限付き）', '④ Recommendation with a deadline'],
  'flow.check': ['⑤ 期限後の確認', '⑤ Check after the deadline'],
  'flow.stop': ['⑥ サービス停止', '⑥ Stop the service'],
  'flow.notify': ['⑦ 医療機関への通知', '⑦ Notify the institution'],
  'flow.resume': ['再開', 'Resume'],
  'step.fact': ['① 事実', '① Fact'],
  'step.hearing': ['② ヒアリング', '② Hearing'],
  'step.hearing-skipped': ['② ヒアリング省略（緊急）', '② Hearing skipped (urgent)'],
  'step.report': ['③ 報告', '③ Report'],
  'step.recommend': ['④ 是正勧告', '④ Recommendation'],
  'step.check': ['⑤ 確認', '⑤ Check'],
  'step.stop': ['⑥ 停止', '⑥ Stop'],
  'step.resume': ['再開', 'Resume'],

  'time.d': ['{n}日', '{n} d'],
  'time.h': ['{n}時間', '{n} h'],
  'time.m': ['{n}分', '{n} min'],
  'time.s': ['{n}秒', '{n} s'],
};

let current = 'ja';
try {
  current = localStorage.getItem(STORAGE_KEY) === 'en' ? 'en' : 'ja';
} catch {
  current = 'ja';
}

/** `ja` or `en`. */
export const lang = () => current;

/** Switches the language and remembers it. */
export function setLang(next) {
  current = next === 'en' ? 'en' : 'ja';
  try {
    localStorage.setItem(STORAGE_KEY, current);
  } catch {
    // Private mode without storage: the choice lasts until the page closes.
  }
  document.documentElement.lang = current;
}

/** The text of `key` in the current language, `{name}`s filled from `vars`. */
export function t(key, vars = {}) {
  const entry = STRINGS[key];
  if (!entry) {
    console.error(`i18n: no text for ${key}`);
    return `⚠${key}`;
  }
  return entry[current === 'ja' ? 0 : 1].replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** A role's name. */
export const roleName = (role) => t(`role.${role}`);

/** A `{ja, en}` text in the current language (a plain string as it is). */
export function pick(text) {
  if (text === null || text === undefined) return '';
  if (typeof text === 'string') return text;
  return text[current] ?? text.ja ?? text.en ?? '';
}

const locale = () => (current === 'ja' ? 'ja-JP' : 'en-GB');

/** Date and time with the time zone. */
export function dateTime(ms) {
  if (ms === null || ms === undefined) return '—';
  return new Intl.DateTimeFormat(locale(), {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    timeZoneName: 'short',
  }).format(new Date(ms));
}

/** The date alone. */
export const dateOnly = (ms) =>
  new Intl.DateTimeFormat(locale(), { year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date(ms));

/** Hours and minutes (graph axes). */
export const clock = (ms) =>
  new Intl.DateTimeFormat(locale(), { hour: '2-digit', minute: '2-digit', hour12: false }).format(new Date(ms));

/** How long ago, in words. */
export function ago(ms) {
  if (!ms) return '—';
  const seconds = Math.round((ms - Date.now()) / 1000);
  const format = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' });
  for (const [unit, size] of [
    ['day', 86400],
    ['hour', 3600],
    ['minute', 60],
  ]) {
    if (Math.abs(seconds) >= size) return format.format(Math.trunc(seconds / size), unit);
  }
  return format.format(seconds, 'second');
}

/** Whole days from now until `unixSeconds` (negative once past), or null. */
export const daysLeft = (unixSeconds) =>
  unixSeconds === null || unixSeconds === undefined ? null : Math.floor((unixSeconds * 1000 - Date.now()) / 86400000);

/** A count with digit grouping. */
export const number = (n) => new Intl.NumberFormat(locale()).format(n ?? 0);

/** Percent, no decimals. */
export const pct = (v) => `${Math.round(v)}%`;

/** Bits per second with an SI prefix. */
export function bps(v) {
  const units = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s'];
  let value = v;
  let i = 0;
  while (Math.abs(value) >= 1000 && i < units.length - 1) {
    value /= 1000;
    i += 1;
  }
  const digits = value >= 100 || i === 0 ? 0 : 1;
  return `${value.toFixed(digits)} ${units[i]}`;
}

/** A span of time from its largest unit down to seconds (a countdown). */
export function duration(ms) {
  let seconds = Math.max(0, Math.floor(ms / 1000));
  const parts = [];
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ]) {
    const n = Math.floor(seconds / size);
    seconds -= n * size;
    if (n || parts.length || unit === 's') parts.push(t(`time.${unit}`, { n }));
  }
  return parts.join(current === 'ja' ? '' : ' ');
}

/** A refused request in plain words: what happened, what to do. */
export function explain(error) {
  const detail = error.message ?? '';
  const words = (() => {
    switch (error.code) {
      case 'unauthenticated':
        return t('refusal.unauthenticated');
      case 'forbidden':
        return t('refusal.forbidden', {
          required: error.requiredRole ? roleName(error.requiredRole) : '—',
          role: error.role ? roleName(error.role) : '—',
        });
      case 'cross_origin':
        return t('refusal.cross_origin');
      case 'bad_request':
      case 'too_large':
        return t('refusal.bad_request', { detail });
      case 'not_found':
        return t('refusal.not_found', { detail });
      case 'refused':
        return t('refusal.refused', { detail });
      case 'order_keys':
        return t('refusal.order_keys', { detail });
      case 'unavailable':
        return t('refusal.unavailable');
      case 'network':
        return t('refusal.network');
      default:
        return t('refusal.other', { status: error.status, detail });
    }
  })();
  return `${words} ${t('refusal.nothing_changed')}`;
}
