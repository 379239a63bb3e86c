// The Delivery Status page: a table of destinations (tophosts), a host status view
// (hoststatus), a chart of the last hour and the Retry buttons (delivernow). Everything
// comes from esad-web's /api (docs/web.md); nothing is loaded from anywhere else.
'use strict';
(function () {
  const REFRESH_MS = 5000;
  const state = { hosts: [], sortKey: 'active_recipients', sortDir: -1, csrf: '',
                  actionsEnabled: false, timer: null, refreshing: false };
  const $ = (id) => document.getElementById(id);

  function token() { return sessionStorage.getItem('esad-token') || ''; }

  async function getJSON(url) {
    const r = await fetch(url, { cache: 'no-store', credentials: 'same-origin' });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }

  function fmtTime(t) {
    if (!t) return '-';
    return new Date(t * 1000).toLocaleString();
  }

  function statusOf(h) { return h.status || (h.down ? 'down' : 'up'); }

  function showMessage(text, ok) {
    const m = $('message');
    m.textContent = text;
    m.className = ok ? 'ok' : 'error';
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function sortedFiltered() {
    const f = $('filter').value.trim().toLowerCase();
    const rows = state.hosts.filter((h) => !f || h.host.toLowerCase().includes(f));
    const k = state.sortKey;
    rows.sort((a, b) => {
      const x = k === 'status' ? statusOf(a) : a[k];
      const y = k === 'status' ? statusOf(b) : b[k];
      if (x === y) return a.host < b.host ? -1 : 1;
      return (x < y ? -1 : 1) * state.sortDir;
    });
    return rows;
  }

  function renderTable() {
    const body = document.querySelector('#hosts tbody');
    body.textContent = '';
    const rows = sortedFiltered();
    for (const h of rows) {
      const tr = document.createElement('tr');
      const st = statusOf(h);
      tr.dataset.host = h.host;
      tr.className = st === 'down' ? 'down' : '';
      const name = document.createElement('td');
      name.className = 'host text';
      const a = document.createElement('a');
      a.textContent = h.host;
      a.dataset.host = h.host;
      a.className = 'host-link';
      name.appendChild(a);
      tr.appendChild(name);
      cell(tr, st === 'down' ? 'down *' : st, 'status text status-' + st);
      cell(tr, String(h.active_recipients), 'active');
      cell(tr, String(h.connections_out), 'conn');
      cell(tr, String(h.delivered_recipients), 'delivered');
      cell(tr, String(h.soft_bounced), 'soft');
      cell(tr, String(h.hard_bounced), 'hard');
      cell(tr, fmtTime(h.last_activity), 'last');
      const act = document.createElement('td');
      act.className = 'action text';
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = 'Retry';
      b.className = 'retry';
      b.dataset.host = h.host;
      act.appendChild(b);
      tr.appendChild(act);
      body.appendChild(tr);
    }
    for (const th of document.querySelectorAll('#hosts th[data-key]')) {
      th.classList.remove('sorted-asc', 'sorted-desc');
      if (th.dataset.key === state.sortKey)
        th.classList.add(state.sortDir > 0 ? 'sorted-asc' : 'sorted-desc');
    }
    $('total').textContent = rows.length + ' of ' + state.hosts.length + ' destinations shown';
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function label(v, max) {
    return max >= 8 ? String(Math.round(v)) : v.toFixed(1);
  }

  // The last hour; while esad-web has sampled for less, the axis spans what it has (at
  // least three sampling intervals) so that a fresh chart is not a sliver at the right edge.
  function drawChart(hist) {
    const W = 640, H = 180, L = 40, R = 40, T = 10, B = 20;
    const pts = hist.points || [];
    const now = Date.now() / 1000;
    const window = hist.window || 3600;
    const minSpan = Math.max(30, 3 * (hist.interval || 10));
    const span = Math.min(window, Math.max(minSpan, pts.length ? now - pts[0].t : 0));
    const t0 = now - span;
    const maxA = Math.max(1, ...pts.map((p) => p.active));
    const maxR = Math.max(1, ...pts.map((p) => p.delivered_per_min));
    const x = (t) => L + (W - L - R) * Math.max(0, (t - t0)) / span;
    const ya = (v) => H - B - (H - T - B) * v / maxA;
    const yr = (v) => H - B - (H - T - B) * v / maxR;
    const grid = $('chart-grid');
    const labels = $('chart-labels');
    grid.textContent = '';
    labels.textContent = '';
    for (let i = 0; i <= 4; i++) {
      const y = T + (H - T - B) * i / 4;
      grid.appendChild(svg('line', { x1: L, x2: W - R, y1: y, y2: y, class: 'grid' }));
      labels.appendChild(svg('text', { x: 2, y: y + 3 }, label(maxA * (4 - i) / 4, maxA)));
      labels.appendChild(svg('text', { x: W - R + 4, y: y + 3 }, label(maxR * (4 - i) / 4, maxR)));
    }
    for (let i = 4; i >= 0; i--) {
      const ago = span * i / 4;
      const text = i === 0 ? 'now' : ago >= 120 ? '-' + Math.round(ago / 60) + 'm' : '-' + Math.round(ago) + 's';
      labels.appendChild(svg('text', { x: x(now - ago) - 10, y: H - 4 }, text));
    }
    const line = (f) => pts.map((p) => x(p.t).toFixed(1) + ',' + f(p).toFixed(1)).join(' ');
    $('line-active').setAttribute('points', line((p) => ya(p.active)));
    $('line-rate').setAttribute('points', line((p) => yr(p.delivered_per_min)));
    $('chart').dataset.points = String(pts.length);
  }

  async function refresh() {
    if (state.refreshing) return;
    state.refreshing = true;
    try {
      const [hosts, hist] = await Promise.all([getJSON('/api/hosts'), getJSON('/api/history')]);
      state.hosts = hosts.hosts || [];
      $('asof').textContent = 'Status as of: ' + fmtTime(hosts.status_as_of) +
        ' (' + hosts.total_hosts + ' destinations)';
      renderTable();
      drawChart(hist);
      if (!$('detail').hidden) showDetail($('detail-host').textContent, true);
    } catch (e) {
      $('asof').textContent = 'Cannot read the delivery status: ' + e.message;
    } finally {
      state.refreshing = false;
    }
  }

  async function retry(target) {
    if (!state.actionsEnabled) {
      showMessage('Retry is disabled: esad-web has no operator token configured.', false);
      return;
    }
    try {
      const r = await fetch('/api/delivernow', {
        method: 'POST', cache: 'no-store', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': state.csrf,
                   'Authorization': 'Bearer ' + token() },
        body: JSON.stringify({ target: target }) });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) {
        showMessage('Refused: ' + (body.error || r.statusText), false);
        return;
      }
      const what = target === 'all' ? 'Retry All Delivery' : 'Retry ' + target;
      showMessage(what + ': ' + body.recipients + ' recipients scheduled for immediate delivery.', true);
      setTimeout(refresh, 500);
    } catch (e) {
      showMessage('Refused: ' + e.message, false);
    }
  }

  function kv(table, label, value) {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.textContent = label;
    tr.appendChild(th);
    cell(tr, value === undefined || value === null || value === '' ? '-' : String(value));
    table.appendChild(tr);
  }

  async function showDetail(host, quiet) {
    $('detail').hidden = false;
    $('detail-host').textContent = host;
    const out = $('detail-body');
    if (!quiet) out.textContent = 'Loading...';
    try {
      const d = await getJSON('/api/hoststatus?host=' + encodeURIComponent(host));
      out.textContent = '';
      const t = document.createElement('table');
      t.id = 'detail-table';
      kv(t, 'Host up/down', d.status);
      kv(t, 'Retry at', d.retry_at ? fmtTime(d.retry_at) : '-');
      kv(t, 'Active recipients', d.gauges.active_recipients);
      kv(t, 'Current outbound connections', d.gauges.current_outbound_connections);
      kv(t, 'Delivered', d.counters.delivered_recipients);
      kv(t, 'Soft bounced events', d.counters.soft_bounced_events);
      kv(t, 'Hard bounced', d.counters.hard_bounced_recipients);
      kv(t, 'Oldest message', fmtTime(d.oldest_message));
      kv(t, 'Last activity', fmtTime(d.last_activity));
      kv(t, 'Routes', (d.routes || []).map((r) => typeof r === 'string' ? r : JSON.stringify(r)).join(', '));
      kv(t, 'MX records', (d.mx_records || []).map((m) => m.preference + ' ' + m.host).join(', '));
      kv(t, 'IP addresses', (d.ordered_ips || []).map((a) => a.host + ' ' + a.ip).join(', '));
      for (const ip of d.ips || [])
        kv(t, 'IP ' + ip.ip, (ip.last_error || 'ok') + ' (' + ip.failures + ' failures, ' +
           ip.successes + ' successes, last ' + fmtTime(ip.last_attempt) + ')');
      kv(t, 'Last 5XX error', d.last_5xx && d.last_5xx.text ? d.last_5xx.text + ' at ' + fmtTime(d.last_5xx.at) : '-');
      kv(t, 'Last soft error', d.last_soft_error && d.last_soft_error.text
        ? d.last_soft_error.text + ' at ' + fmtTime(d.last_soft_error.at) : '-');
      out.appendChild(t);
    } catch (e) {
      out.textContent = 'Cannot read the host status: ' + e.message;
    }
  }

  function schedule() {
    if (state.timer) clearInterval(state.timer);
    state.timer = $('autorefresh').checked ? setInterval(refresh, REFRESH_MS) : null;
  }

  function showAuth() {
    $('auth-state').textContent = !state.actionsEnabled ? 'Retry is disabled on this server.'
      : token() ? 'Token set for this tab.' : 'No token: Retry will be refused.';
  }

  async function init() {
    try {
      const s = await getJSON('/api/session');
      state.csrf = s.csrf;
      state.actionsEnabled = s.actions_enabled;
    } catch (e) {
      showMessage('Cannot start a session: ' + e.message, false);
    }
    showAuth();
    $('signin').addEventListener('click', () => {
      sessionStorage.setItem('esad-token', $('token').value);
      $('token').value = '';
      showAuth();
    });
    $('retry-all').addEventListener('click', () => retry('all'));
    $('filter').addEventListener('input', renderTable);
    $('autorefresh').addEventListener('change', schedule);
    $('detail-close').addEventListener('click', () => { $('detail').hidden = true; });
    for (const th of document.querySelectorAll('#hosts th[data-key]')) {
      th.addEventListener('click', () => {
        if (state.sortKey === th.dataset.key) state.sortDir = -state.sortDir;
        else { state.sortKey = th.dataset.key; state.sortDir = th.classList.contains('text') ? 1 : -1; }
        renderTable();
      });
    }
    document.querySelector('#hosts tbody').addEventListener('click', (ev) => {
      const t = ev.target;
      if (t.classList.contains('retry')) retry(t.dataset.host);
      else if (t.classList.contains('host-link')) showDetail(t.dataset.host);
    });
    await refresh();
    schedule();
    document.body.dataset.ready = '1';
  }

  document.addEventListener('DOMContentLoaded', init);
})();
