// The app page: finish the SMART launch (code exchange with the PKCE verifier, in fhirclient),
// read the record with the access token (the CDS services' own queries), then ask the service to
// evaluate it (POST api/picture: the same mappers and rules as the cards) and draw the answer.
// Nothing clinical is decided here.
(function () {
  const $ = (id) => document.getElementById(id);
  const status = $('status');
  const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
  const show = (id) => { $(id).hidden = false; };
  const num = (v) => (v === null || v === undefined ? '—' : (Math.round(v * 100) / 100).toString());
  const LABELS = { wbc: 'White cells (10⁹/L)', neutrophils: 'Neutrophils (10⁹/L)', lymphocytes: 'Lymphocytes (10⁹/L)',
    platelets: 'Platelets (10⁹/L)', hemoglobin: 'Haemoglobin', mcv: 'MCV (fL)', alt: 'ALT (U/L)', ast: 'AST (U/L)',
    tgn: '6-TGN (pmol/8×10⁸ RBC)', mmp: '6-MMP (pmol/8×10⁸ RBC)' };
  const KIND = { diplotype: 'genotype', phenotype: 'phenotype', activity: 'enzyme activity', unreadable: 'could not be read' };

  function entries(result) {
    const pages = Array.isArray(result) ? result : [result];
    if (pages.length === 1 && pages[0] && pages[0].resourceType !== 'Bundle') return pages[0];
    const entry = [];
    pages.forEach((p) => (p && p.entry ? p.entry : []).forEach((e) => entry.push(e)));
    return { resourceType: 'Bundle', type: 'searchset', entry };
  }

  async function readRecord(client, pid) {
    const q = await (await fetch('api/queries?patient=' + encodeURIComponent(pid))).json();
    const prefetch = {};
    await Promise.all(Object.entries(q.queries).map(async ([key, query]) => {
      try {
        prefetch[key] = entries(await client.request(query, { pageLimit: 10, flat: false }));
      } catch (err) {
        // left out: the service names it as data it could not check (a card, never "normal")
      }
    }));
    return prefetch;
  }

  function patientLine(p) {
    if (!p || p.resourceType !== 'Patient') return '';
    const n = (p.name || [])[0] || {};
    const name = n.text || [(n.given || []).join(' '), n.family].filter(Boolean).join(' ');
    return [name || 'Patient ' + p.id, p.birthDate ? 'born ' + p.birthDate : '', p.gender || ''].filter(Boolean).join(' · ');
  }

  function drawFindings(cards, named) {
    const list = $('findings');
    cards.forEach((c) => {
      const li = el('li', undefined, c.indicator);
      const rule = c.source.topic.code;
      if (named.includes(rule)) li.classList.add('named');
      li.appendChild(el('span', c.indicator, 'ind'));
      li.appendChild(el('p', c.summary));
      const src = el('p', 'Source: ', 'src');
      const links = (c.links || []).filter((l) => l.type === 'absolute');
      if (links.length) {
        links.forEach((l, i) => { const a = el('a', l.label); a.href = l.url; a.rel = 'noopener'; src.appendChild(a); if (i < links.length - 1) src.appendChild(document.createTextNode('; ')); });
      } else src.appendChild(document.createTextNode(c.source.label));
      src.appendChild(document.createTextNode(' (rule ' + rule + ')'));
      li.appendChild(src);
      list.appendChild(li);
    });
    if (!cards.length) list.appendChild(el('li', 'No finding for these orders.'));
    $('named').textContent = named.length ? 'Outlined: the findings of the card you came from.' : '';
    show('findings-section');
  }

  const pct = (f) => Math.round(f * 100) + ' %';
  function meaning(m, guideline) {
    if (!m || !m.action) return '—';
    const by = ' (' + guideline + ', ' + m.drug + ')';
    if (m.action === 'normal') return 'normal starting dose' + by;
    if (m.action === 'reduce') return 'start at ' + (m.low === m.high ? pct(m.low) : Math.round(m.low * 100) + '-' + pct(m.high)) + ' of the normal dose' + by;
    if (m.action === 'avoid') return 'consider a non-thiopurine alternative' + (m.malignant_fraction ? '; in malignancy ' + pct(m.malignant_fraction) + ' of the dose' : '') + by;
    if (m.action === 'avoid_or_reduce') return 'an alternative, or ' + pct(m.fraction) + ' of the normal dose' + by;
    return m.action + by;
  }

  function drawGenes(genes) {
    const body = $('genes').querySelector('tbody');
    genes.forEach((g) => {
      const results = g.results.length ? g.results : [{ kind: '', value: 'no result on record' }];
      results.forEach((r, i) => {
        const tr = el('tr');
        tr.appendChild(el(i === 0 ? 'th' : 'td', i === 0 ? g.gene : ''));
        if (i === 0) tr.firstChild.setAttribute('scope', 'row');
        tr.appendChild(el('td', r.value + (r.when ? ' (' + r.when.slice(0, 10) + ')' : '') + (r.preliminary ? ' PRELIMINARY' : '')));
        tr.appendChild(el('td', KIND[r.kind] || r.kind || '—'));
        tr.appendChild(el('td', i === 0 ? (g.phenotype ? g.phenotype + ' (' + g.guideline + ')' : g.state) : ''));
        tr.appendChild(el('td', i === 0 ? meaning(g.meaning, g.guideline) : ''));
        body.appendChild(tr);
      });
    });
    show('genes-section');
  }

  // The service's thresholds as dashed horizontal lines across the whole plot (a series of one
  // result still shows them), each labelled at its right end.
  const thresholdLines = {
    id: 'thresholdLines',
    afterDatasetsDraw(chart, args, opts) {
      const { ctx, chartArea, scales } = chart;
      (opts.lines || []).forEach((t) => {
        const y = scales.y.getPixelForValue(t.value);
        if (y < chartArea.top || y > chartArea.bottom) return;
        ctx.save();
        ctx.strokeStyle = t.color; ctx.setLineDash([6, 4]); ctx.lineWidth = 1.5;
        ctx.beginPath(); ctx.moveTo(chartArea.left, y); ctx.lineTo(chartArea.right, y); ctx.stroke();
        ctx.setLineDash([]); ctx.fillStyle = t.color; ctx.font = '11px system-ui, sans-serif';
        ctx.textAlign = 'right'; ctx.fillText(t.label, chartArea.right - 2, y - 3);
        ctx.restore();
      });
    },
  };

  function lineChart(canvas, labels, series, lines) {
    const top = Math.max(...series.data.filter((v) => v !== null), ...lines.map((t) => t.value));
    return new Chart(canvas, { type: 'line', plugins: [thresholdLines],
      data: { labels, datasets: [{ label: series.label, data: series.data, borderColor: '#0b3d62', backgroundColor: '#0b3d62', tension: 0, spanGaps: true }] },
      options: { animation: false, maintainAspectRatio: false, responsive: true,
        plugins: { legend: { display: false }, thresholdLines: { lines } },
        scales: { y: { beginAtZero: true, suggestedMax: top * 1.15 } } } });
  }

  function drawDoses(doses) {
    const body = $('doses').querySelector('tbody');
    doses.forEach((d) => {
      const tr = el('tr');
      tr.appendChild(el('td', (d.date || '—') + (d.draft ? ' (this order)' : d.status === 'active' ? ' (active)' : '')));
      tr.appendChild(el('td', d.display));
      tr.appendChild(el('td', d.mg_per_day === null ? (d.dose_problem || '—') : num(d.mg_per_day)));
      tr.appendChild(el('td', d.mg_per_kg_day === null ? 'no weight' : num(d.mg_per_kg_day) + (d.weight_kg ? ' (' + num(d.weight_kg) + ' kg)' : '')));
      tr.appendChild(el('td', d.indication + ': ' + (d.max_mg_per_kg_day ? 'up to ' + d.max_mg_per_kg_day + ' mg/kg/day' : d.range_text && d.range_text.startsWith('no cited dose range') ? 'no dose range applied' : 'per m²') + (d.range_text ? ' (' + d.range_text + ')' : '')));
      body.appendChild(tr);
    });
    const charted = doses.filter((d) => d.mg_per_kg_day !== null);
    if (charted.length) {
      const max = charted[charted.length - 1].max_mg_per_kg_day;
      lineChart($('dose-chart'), charted.map((d) => d.date || 'now'), { label: 'mg/kg/day', data: charted.map((d) => d.mg_per_kg_day) },
        max ? [{ label: 'maximum for the indication: ' + max, value: max, color: '#a4001a' }] : []);
      $('dose-chart').setAttribute('aria-label', 'Dose history in mg/kg/day: ' + charted.map((d) => (d.date || 'now') + ' ' + num(d.mg_per_kg_day)).join(', ') + (max ? '; maximum ' + max : ''));
    } else $('dose-chart').parentNode.hidden = true;
    show('dose-section');
  }

  function drawLabs(labs) {
    const box = $('labs');
    // results dated after today: listed apart, never charted as current values (the rules set them aside)
    const ahead = (m) => (m.when || '').slice(0, 10) + ' ' + (m.comparator || '') + num(m.value) + ' ' + m.unit;
    Object.entries(labs).forEach(([analyte, lab]) => {
      const later = lab.after_today || [];
      if (!lab.series.length && !later.length) return;
      const div = el('div', undefined, 'lab');
      const h = el('h3', LABELS[analyte] || analyte);
      div.appendChild(h);
      if (later.length) {
        div.appendChild(el('p', 'Dated after today, not a current value (verify its date at the laboratory): ' + later.map(ahead).join('; '), 'after-today'));
      }
      if (!lab.series.length) { box.appendChild(div); return; }
      const wrap = el('div', undefined, 'chart');
      const canvas = el('canvas');
      const values = lab.series.map((m) => (m.when || '').slice(0, 10) + ' ' + (m.comparator || '') + num(m.value));
      const cuts = lab.thresholds.map((t) => t.direction + ' ' + t.value + (t.severity === 'severe' ? ' (severe)' : ''));
      canvas.setAttribute('role', 'img');
      canvas.setAttribute('aria-label', (LABELS[analyte] || analyte) + ': ' + values.join(', ') + (cuts.length ? '. Thresholds: ' + cuts.join(', ') : ''));
      wrap.appendChild(canvas);
      div.appendChild(wrap);
      const last = lab.series[lab.series.length - 1];
      div.appendChild(el('p', 'Latest: ' + (last.comparator || '') + num(last.value) + ' ' + last.unit + ' on ' + (last.when || '').slice(0, 10) + (last.after_today ? ' (dated after today: verify its date)' : '') + (cuts.length ? '. Thresholds: ' + cuts.join(', ') : '')));
      box.appendChild(div);
      lineChart(canvas, lab.series.map((m) => (m.when || '').slice(0, 10)), { label: analyte, data: lab.series.map((m) => m.value) },
        lab.thresholds.map((t) => ({ label: t.direction + ' ' + t.value + (t.severity === 'severe' ? ' (severe)' : ''), value: t.value, color: t.severity === 'severe' ? '#a4001a' : '#7a4a00' })));
    });
    if (!box.children.length) box.appendChild(el('p', 'No results on record.'));
    show('labs-section');
  }

  function drawList(id, items, empty) {
    const ul = $(id);
    items.forEach((t) => ul.appendChild(el('li', t)));
    if (!items.length) ul.appendChild(el('li', empty));
    show(id + '-section');
  }

  async function main() {
    let client;
    try {
      client = await FHIR.oauth2.ready();
    } catch (err) {
      status.textContent = 'The launch could not be completed: ' + err.message;
      status.className = 'error';
      return;
    }
    let context = {};
    const raw = client.state.tokenResponse && client.state.tokenResponse.appContext;
    try { context = typeof raw === 'string' ? JSON.parse(raw) : (raw || {}); } catch (e) { context = {}; }
    // the patient in context: the token response's, else the one the card named
    const pid = client.patient.id || context.patient;
    if (!pid) {
      status.textContent = 'The EHR did not say which patient this is (no patient in the launch context).';
      status.className = 'error';
      return;
    }
    const prefetch = await readRecord(client, pid);
    $('patient').textContent = patientLine(prefetch.patient);
    status.textContent = 'Evaluating…';
    const resp = await fetch('api/picture', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      // the FHIR server the record was read from: its absolute references are this patient's (round-11 H2)
      body: JSON.stringify({ patientId: pid, prefetch, appContext: context, fhirServer: client.state.serverUrl }) });
    const answer = await resp.json();
    if (!resp.ok) {
      status.textContent = 'The service could not evaluate the record: ' + ((answer.issue || [{}])[0].diagnostics || resp.status);
      status.className = 'error';
      return;
    }
    status.textContent = answer.picture ? 'Evaluated on ' + answer.picture.today + ' (' + answer.picture.guideline + ').' : 'No thiopurine order to evaluate.';
    drawFindings(answer.cards, answer.named || []);
    if (!answer.picture) return;
    const p = answer.picture;
    drawGenes(p.genes);
    drawDoses(p.doses);
    drawLabs(p.labs);
    drawList('meds', p.interacting.map((m) => m.display + ' (' + (m.draft ? 'ordered now' : m.status) + ')'), 'None on record.');
    const phase = {new_start: 'new start: early phase', dose_change: 'dose change: early phase',
      recent_start: 'recent start: early phase', restart_hold: 'restart after a hold: early phase', therapy_unknown: 'therapy status unknown: early phase as for a start'}[p.monitoring.phase];
    const early = Boolean(phase);
    const due = (label, d) => label + ': last ' + (d.last || 'never') + (d.due ? ', next due by ' + d.due + (d.overdue ? ' (OVERDUE)' : '') : '') + ' (interval ' + d.window_days + ' days' + (early ? ', ' + phase : '') + ')';
    drawList('due', [due('Blood count', p.monitoring.cbc), due('Liver tests', p.monitoring.liver)], '');
    if (p.gaps.length) drawList('gaps', p.gaps.map((g) => g.what + (g.why ? ': ' + g.why : '')), '');
    document.body.dataset.ready = 'true';
  }

  main().catch((err) => { status.textContent = 'Error: ' + err.message; status.className = 'error'; });
})();
