// The gateway's operator page: plain JavaScript over the gateway's own REST and WebSocket
// protocol (PROTOCOL.md). One WebSocket; subscriptions follow the rows on screen; updates are
// applied once per animation frame; nothing is shown as live while the connection or the data
// source is down.
'use strict';

const $ = (id) => document.getElementById(id);
const ROW = 28;          // px per channel row (style.css .row height)
const OVERSCAN = 6;      // rows rendered above and below the visible ones
const MAX_TREND = 7200;  // points kept in the trend (an hour of 10 s buckets + live values)
const TYPES = ['T', 'S', 'C', 'A'];
const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };

const S = {
  token: sessionStorage.getItem('vg.token'),
  refresh: sessionStorage.getItem('vg.refresh'),
  refreshTimer: 0,
  me: null,
  ws: null,
  wsSeq: 0,
  backoff: 1000,
  connected: false,
  sourceOk: true,
  channels: new Map(),   // id -> {id, name, status, last_update, values: {T: {pid: v}}}
  order: [],             // ids after the filter, sorted
  subscribed: new Set(),
  wantSubs: new Set(),
  subTimer: 0,
  selected: null,
  points: new Map(),     // "T:1" -> {name, unit} of the selected channel's point table
  trend: null,           // {ch, t, p, plot, xs, ys}
  alarms: new Map(),
  commands: new Map(),   // request id -> {li, command_id}
  dirty: new Set(),      // channel ids changed since the last frame
  frame: 0,
};

// ---------------------------------------------------------------- REST ----

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (S.token) headers.Authorization = 'Bearer ' + S.token;
  if (opts.body) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  return { status: r.status, body, headers: r.headers };
}

function saveTokens(d) {
  S.token = d.access_token;
  S.refresh = d.refresh_token;
  sessionStorage.setItem('vg.token', S.token);
  sessionStorage.setItem('vg.refresh', S.refresh);
  clearTimeout(S.refreshTimer);
  // Renew well before expiry; the open WebSocket is told the fresh token.
  S.refreshTimer = setTimeout(renew, Math.max(5, d.expires_in * 0.8) * 1000);
}

function clearTokens() {
  S.token = S.refresh = null;
  sessionStorage.removeItem('vg.token');
  sessionStorage.removeItem('vg.refresh');
  clearTimeout(S.refreshTimer);
}

async function renew() {
  if (!S.refresh) return;
  const r = await api('/api/auth/refresh', { method: 'POST', body: JSON.stringify({ refresh_token: S.refresh }) });
  if (r.status === 200 && r.body && r.body.success) {
    saveTokens(r.body.data);
    send({ type: 'auth', id: 'auth_' + (++S.wsSeq), data: { token: S.token } });
  } else {
    clearTokens();
    await start();
  }
}

// ---------------------------------------------------------------- start ---

async function start() {
  let me = await api('/api/auth/me');
  if (me.status === 401 && S.token) {
    // The access token expired while the page was closed: the refresh token may still
    // renew the login; only if it cannot is the page anonymous.
    const refreshed = S.refresh && await api('/api/auth/refresh', { method: 'POST', body: JSON.stringify({ refresh_token: S.refresh }) });
    if (refreshed && refreshed.status === 200 && refreshed.body && refreshed.body.success) {
      saveTokens(refreshed.body.data);
    } else {
      clearTokens();
    }
    me = await api('/api/auth/me');
  }
  const who = me.body && me.body.success ? me.body.data : null;
  if (!who || !who.role) {
    showLogin();
    return;
  }
  S.me = who;
  $('who').textContent = who.anonymous ? `anonymous (${who.role})` : `${who.username} (${who.role})`;
  $('logout').hidden = who.anonymous;
  $('login').hidden = true;
  $('app').hidden = false;
  $('control-form').hidden = rank() < ROLE_RANK.operator;
  if (S.token && S.refresh && !S.refreshTimer) {
    // After a reload: renew at 80% of what is left of the token's life (as saveTokens does).
    const left = who.expires_at ? Date.parse(who.expires_at) - Date.now() : 60_000;
    S.refreshTimer = setTimeout(renew, Math.max(5_000, left * 0.8));
  }
  await Promise.all([loadChannels(), loadAlarms()]);
  connect();
  setInterval(loadChannels, 10_000);
}

function rank() {
  return (S.me && ROLE_RANK[S.me.role]) || 0;
}

function showLogin() {
  $('app').hidden = true;
  $('login').hidden = false;
  $('logout').hidden = true;
  $('who').textContent = '';
  setConn('down', 'not logged in');
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const r = await api('/api/auth/login', {
    method: 'POST',
    body: JSON.stringify({ username: f.get('username'), password: f.get('password') }),
  });
  if (r.status === 200 && r.body.success) {
    $('login-error').textContent = '';
    saveTokens(r.body.data);
    location.reload();
  } else {
    $('login-error').textContent = (r.body && r.body.error && r.body.error.details) || `login failed (${r.status})`;
  }
});

$('logout').addEventListener('click', async () => {
  await api('/api/auth/logout', { method: 'POST', body: S.refresh ? JSON.stringify({ refresh_token: S.refresh }) : undefined });
  clearTokens();
  location.reload();
});

// ------------------------------------------------------------ WebSocket ---

function setConn(kind, text) {
  const el = $('conn');
  el.className = 'conn ' + kind;
  el.textContent = text;
  el.dataset.state = kind === 'up' ? 'connected' : text.startsWith('reconnecting') ? 'reconnecting' : 'down';
  liveness();
}

function liveness() {
  const live = S.connected && S.sourceOk;
  document.body.classList.toggle('not-live', !live);
  document.body.dataset.live = live ? 'yes' : 'no';
}

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${proto}//${location.host}/ws` + (S.token ? '?token=' + encodeURIComponent(S.token) : '');
  const ws = new WebSocket(url);
  S.ws = ws;
  ws.onopen = () => {
    S.connected = true;
    S.backoff = 1000;
    setConn('up', 'connected');
    S.subscribed.clear();
    syncSubscriptions(true);
  };
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch (_) { return; }
    onMessage(m);
  };
  ws.onclose = () => {
    if (S.ws !== ws) return;
    S.connected = false;
    S.subscribed.clear();
    // Exponential backoff with jitter, at most 30 s.
    const wait = Math.min(30_000, S.backoff) * (0.75 + Math.random() * 0.5);
    S.backoff = Math.min(30_000, S.backoff * 2);
    let left = Math.round(wait / 1000);
    setConn('down', `reconnecting in ${left}s`);
    const tick = setInterval(() => {
      left -= 1;
      if (left > 0 && !S.connected) setConn('down', `reconnecting in ${left}s`);
    }, 1000);
    setTimeout(() => { clearInterval(tick); setConn('down', 'reconnecting…'); connect(); }, wait);
  };
}

function send(m) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) {
    S.ws.send(JSON.stringify(m));
    return true;
  }
  return false;
}

function onMessage(m) {
  const d = m.data || {};
  switch (m.type) {
    case 'status':
      S.sourceOk = d.source === 'healthy';
      $('source').textContent = S.sourceOk ? '' : `server degraded: ${d.reason || ''}`;
      $('source').className = 'source' + (S.sourceOk ? '' : ' degraded');
      liveness();
      break;
    case 'data_update':
      applyUpdate(d);
      break;
    case 'data_batch':
      (d.updates || []).forEach(applyUpdate);
      break;
    case 'data_removed':
      for (const r of d.removed || []) {
        const ch = S.channels.get(r.channel_id);
        const vals = ch && ch.values[r.data_type];
        if (!vals) continue;
        (r.points || []).forEach((p) => delete vals[p]);
        S.dirty.add(ch.id);
      }
      if (!S.frame) S.frame = requestAnimationFrame(flush);
      break;
    case 'alarm':
      onAlarm(d);
      break;
    case 'alarm_ack': {
      const a = S.alarms.get(d.alarm_id);
      if (a) { a.acknowledged = true; a.acknowledged_by = d.acknowledged_by; renderAlarms(); }
      break;
    }
    case 'control_ack':
      onControlAck(d);
      break;
    case 'error':
      if (d.request_id && S.commands.has(d.request_id)) {
        setCommand(d.request_id, 'error', `${d.code}: ${d.details || d.message}`);
      }
      break;
    case 'auth_expired':
      renew();
      break;
    default:
      break;
  }
}

// ------------------------------------------------------------ channels ----

async function loadChannels() {
  const [list, defs] = await Promise.all([api('/api/channels'), api('/api/config/channels')]);
  if (!list.body || !list.body.success) return;
  const names = new Map();
  if (defs.body && defs.body.success) defs.body.data.forEach((c) => names.set(c.channel_id, c.name));
  for (const c of list.body.data) {
    const ch = S.channels.get(c.channel_id) || { id: c.channel_id, values: {} };
    ch.status = c.status;
    ch.last_update = Math.max(ch.last_update || 0, c.last_update || 0);
    ch.name = names.get(c.channel_id) || ch.name || '';
    S.channels.set(c.channel_id, ch);
  }
  applyFilter();
}

function applyFilter() {
  const q = $('filter').value.trim().toLowerCase();
  S.order = [...S.channels.values()]
    .filter((c) => !q || String(c.id).includes(q) || (c.name || '').toLowerCase().includes(q))
    .map((c) => c.id)
    .sort((a, b) => a - b);
  $('channel-count').textContent = `(${S.order.length})`;
  $('channels-inner').style.height = S.order.length * ROW + 'px';
  renderRows();
}

$('filter').addEventListener('input', applyFilter);
$('channels').addEventListener('scroll', () => renderRows(), { passive: true });
window.addEventListener('resize', () => renderRows());

// Only the rows on screen exist in the DOM (1,000 channels stay cheap), and only their
// channels are subscribed.
function renderRows() {
  const box = $('channels');
  const inner = $('channels-inner');
  const first = Math.max(0, Math.floor(box.scrollTop / ROW) - OVERSCAN);
  const last = Math.min(S.order.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW) + OVERSCAN);
  const keep = new Set();
  for (let i = first; i < last; i++) {
    const id = S.order[i];
    keep.add(id);
    let row = inner.querySelector(`[data-id="${id}"]`);
    if (!row) {
      row = document.createElement('div');
      row.className = 'row';
      row.dataset.id = id;
      row.innerHTML = '<span class="id"></span><span class="name"></span><span class="st"></span><span class="upd"></span><span class="values"></span>';
      row.addEventListener('click', () => select(id));
      inner.appendChild(row);
    }
    row.style.top = i * ROW + 'px';
    fillRow(row, S.channels.get(id));
  }
  for (const row of [...inner.children]) {
    if (!keep.has(Number(row.dataset.id))) row.remove();
  }
  const visible = new Set(keep);
  if (S.selected != null) visible.add(S.selected);
  S.wantSubs = visible;
  clearTimeout(S.subTimer);
  S.subTimer = setTimeout(syncSubscriptions, 120);
}

function fillRow(row, ch) {
  if (!ch) return;
  row.classList.toggle('selected', ch.id === S.selected);
  row.classList.toggle('live', S.subscribed.has(ch.id));
  row.children[0].textContent = ch.id;
  row.children[1].textContent = ch.name || '';
  row.children[2].textContent = ch.status || '';
  row.children[2].className = 'st st-' + (ch.status || '');
  row.children[3].textContent = ch.last_update ? new Date(ch.last_update * 1000).toLocaleTimeString() : '';
  row.children[4].textContent = summary(ch);
}

function summary(ch) {
  const parts = [];
  for (const t of TYPES) {
    const v = ch.values[t];
    if (!v) continue;
    for (const p of Object.keys(v).slice(0, 3)) parts.push(`${t}${p}=${fmt(v[p])}`);
    if (parts.length >= 5) break;
  }
  return parts.join('  ');
}

function fmt(v) {
  return typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 10 ? 2 : 1)) : String(v);
}

function syncSubscriptions(all) {
  const want = S.wantSubs;
  const add = [...want].filter((id) => all || !S.subscribed.has(id));
  const drop = [...S.subscribed].filter((id) => !want.has(id));
  if (drop.length && send({ type: 'unsubscribe', id: 'unsub_' + (++S.wsSeq), data: { channels: drop } })) {
    drop.forEach((id) => S.subscribed.delete(id));
  }
  for (let i = 0; i < add.length; i += 100) {
    const chunk = add.slice(i, i + 100);
    if (send({ type: 'subscribe', id: 'sub_' + (++S.wsSeq), data: { channels: chunk, interval: 500 } })) {
      chunk.forEach((id) => S.subscribed.add(id));
    }
  }
}

function applyUpdate(u) {
  const ch = S.channels.get(u.channel_id);
  if (!ch) return;
  const t = u.data_type;
  ch.values[t] = Object.assign(ch.values[t] || {}, u.values);
  ch.last_update = Math.floor(Date.now() / 1000);
  ch.status = 'active';
  S.dirty.add(ch.id);
  if (S.trend && S.trend.ch === ch.id && S.trend.t === t && u.values[S.trend.p] !== undefined) {
    const v = u.values[S.trend.p];
    if (typeof v === 'number') S.trend.pending.push([Date.now() / 1000, v]);
  }
  if (!S.frame) S.frame = requestAnimationFrame(flush);
}

// One DOM pass per animation frame, whatever the message rate.
function flush() {
  S.frame = 0;
  const inner = $('channels-inner');
  for (const id of S.dirty) {
    const row = inner.querySelector(`[data-id="${id}"]`);
    if (row) fillRow(row, S.channels.get(id));
    if (id === S.selected) renderPoints(true);
  }
  S.dirty.clear();
  if (S.trend && S.trend.pending.length) {
    for (const [x, y] of S.trend.pending) { S.trend.xs.push(x); S.trend.ys.push(y); }
    S.trend.pending = [];
    if (S.trend.xs.length > MAX_TREND) {
      S.trend.xs.splice(0, S.trend.xs.length - MAX_TREND);
      S.trend.ys.splice(0, S.trend.ys.length - MAX_TREND);
    }
    S.trend.plot.setData([S.trend.xs, S.trend.ys]);
  }
}

// -------------------------------------------------------------- detail ----

async function select(id) {
  S.selected = id;
  $('detail-title').textContent = `Channel ${id}` + (S.channels.get(id).name ? ` — ${S.channels.get(id).name}` : '');
  S.points = new Map();
  const pts = await api(`/api/config/channels/${id}/points`);
  if (pts.body && pts.body.success) pts.body.data.forEach((p) => S.points.set(`${p.data_type}:${p.point_id}`, p));
  const f = $('control-form');
  f.channel_id.value = id;
  renderRows();
  renderPoints(false);
}

function renderPoints(changedOnly) {
  const ch = S.channels.get(S.selected);
  if (!ch) return;
  const box = $('points');
  if (!changedOnly || !box.querySelector('table')) {
    const rows = [];
    for (const t of TYPES) {
      for (const p of Object.keys(ch.values[t] || {})) {
        const def = S.points.get(`${t}:${p}`) || {};
        rows.push(`<tr class="pt" data-t="${t}" data-p="${p}"><td>${t}</td><td>${p}</td><td>${esc(def.name || '')}</td><td class="pv"></td><td>${esc(def.unit || '')}</td></tr>`);
      }
    }
    box.innerHTML = rows.length
      ? `<table><thead><tr><th>type</th><th>point</th><th>name</th><th>value</th><th>unit</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
      : '<p class="note">no values yet</p>';
    box.querySelectorAll('tr.pt').forEach((tr) => tr.addEventListener('click', () => openTrend(S.selected, tr.dataset.t, tr.dataset.p)));
  }
  box.querySelectorAll('tr.pt').forEach((tr) => {
    const v = (ch.values[tr.dataset.t] || {})[tr.dataset.p];
    const cell = tr.querySelector('.pv');
    const text = v === undefined ? '' : fmt(v);
    if (cell.textContent !== text) {
      cell.textContent = text;
      if (changedOnly) { cell.classList.remove('flash'); void cell.offsetWidth; cell.classList.add('flash'); }
    }
  });
  if (changedOnly && box.querySelectorAll('tr.pt').length !== countPoints(ch)) renderPoints(false);
}

function countPoints(ch) {
  return TYPES.reduce((n, t) => n + Object.keys(ch.values[t] || {}).length, 0);
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

async function openTrend(ch, t, p) {
  const now = Math.floor(Date.now() / 1000);
  $('trend-box').hidden = false;
  $('trend-title').textContent = `Trend ${ch} ${t}${p} — last hour (10 s mean) + live`;
  const r = await api(`/api/channels/${ch}/history?data_type=${t}&point_id=${p}&start_time=${now - 3600}&end_time=${now + 1}&interval=10&agg=mean`);
  const xs = [];
  const ys = [];
  if (r.status === 200 && r.body.success) {
    for (const rec of r.body.data) {
      const v = rec.values[p];
      if (typeof v === 'number') { xs.push(rec.timestamp / 1000); ys.push(v); }
    }
    $('trend-note').textContent = `${xs.length} recorded buckets`;
  } else {
    $('trend-note').textContent = 'history unavailable: ' + ((r.body && r.body.error && r.body.error.details) || r.status) + ' — live values only';
  }
  if (S.trend) S.trend.plot.destroy();
  const box = $('trend');
  const plot = new uPlot({
    width: Math.max(300, box.clientWidth || 400),
    height: 220,
    series: [{}, { label: `${t}${p}`, stroke: '#58a6ff', width: 1.5 }],
    axes: [{ stroke: '#7d8896', grid: { stroke: '#26303b' } }, { stroke: '#7d8896', grid: { stroke: '#26303b' } }],
  }, [xs, ys], box);
  S.trend = { ch, t, p, plot, xs, ys, pending: [] };
  box.dataset.points = String(xs.length);
}

// -------------------------------------------------------------- alarms ----

async function loadAlarms() {
  const r = await api('/api/alarms/active');
  if (!r.body || !r.body.success) return;
  S.alarms.clear();
  r.body.data.forEach((a) => S.alarms.set(a.alarm_id, a));
  renderAlarms();
}

function onAlarm(a) {
  if (a.status === 1) {
    S.alarms.set(a.alarm_id, Object.assign({ triggered_at: new Date().toISOString() }, a));
  } else {
    S.alarms.delete(a.alarm_id);
  }
  renderAlarms();
}

function renderAlarms() {
  const list = [...S.alarms.values()].sort((a, b) => String(b.triggered_at || b.event_id).localeCompare(String(a.triggered_at || a.event_id)));
  $('alarm-count').textContent = `(${list.length})`;
  const ol = $('alarms');
  ol.innerHTML = '';
  for (const a of list) {
    const li = document.createElement('li');
    li.className = `level-${a.level}` + (a.acknowledged ? ' acked' : '');
    li.dataset.alarm = a.alarm_id;
    li.innerHTML = `<div>${esc(a.message || a.alarm_id)}</div><div class="meta">${esc(a.alarm_id)} · ch ${a.channel_id} ${esc(a.data_type || '')}${a.point_id} = ${esc(fmt(a.value))} · level ${a.level}${a.acknowledged ? ' · acknowledged by ' + esc(a.acknowledged_by || '') : ''}</div>`;
    if (!a.acknowledged && rank() >= ROLE_RANK.operator) {
      const b = document.createElement('button');
      b.textContent = 'Acknowledge';
      b.addEventListener('click', async () => {
        b.disabled = true;
        const r = await api(`/api/alarms/${encodeURIComponent(a.alarm_id)}/ack`, { method: 'POST' });
        if (r.status === 200) { a.acknowledged = true; a.acknowledged_by = r.body.data.acknowledged_by; renderAlarms(); } else { b.disabled = false; }
      });
      li.appendChild(b);
    }
    ol.appendChild(li);
  }
}

// ------------------------------------------------------------- control ----

$('control-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const f = e.target;
  const id = 'ctl_' + Date.now() + '_' + (++S.wsSeq);
  const li = document.createElement('li');
  $('commands').prepend(li);
  S.commands.set(id, { li });
  const sent = send({
    type: 'control',
    id,
    data: {
      channel_id: Number(f.channel_id.value),
      point_id: Number(f.point_id.value),
      command_type: f.command_type.value,
      value: Number(f.value.value),
      reason: f.reason.value || undefined,
    },
  });
  li.dataset.summary = `${f.command_type.value} ${f.channel_id.value}/${f.point_id.value} = ${f.value.value}`;
  setCommand(id, sent ? 'sending' : 'error', sent ? 'sent' : 'not connected');
});

function onControlAck(d) {
  if (!d.request_id || !S.commands.has(d.request_id)) return;
  const c = S.commands.get(d.request_id);
  c.command_id = d.command_id || c.command_id;
  const msg = d.result ? (d.result.message || (d.result.success ? 'ok' : 'failed')) + (d.result.actual_value != null ? ` (actual ${fmt(d.result.actual_value)})` : '') : '';
  setCommand(d.request_id, d.status, msg);
}

function setCommand(id, status, msg) {
  const c = S.commands.get(id);
  if (!c) return;
  c.li.className = 'cmd-' + status;
  c.li.dataset.status = status;
  c.li.textContent = `${c.li.dataset.summary || ''} — ${c.command_id || ''} ${status}${msg ? ': ' + msg : ''}`;
}

start();
