// Drive a running bouncer api with SendGrid's official Node library.
//
//   BOUNCER_URL=http://127.0.0.1:8080 BOUNCER_KEY=SG.x.y BOUNCER_MSG=msg-id \
//       node sendgrid_node.js cases.json
//
// Runs every case of cases.json through @sendgrid/client (its baseUrl set
// to BOUNCER_URL with setDefaultRequest, as its README shows for other
// hosts) and prints one line per failure, naming the client and the route.
// Exit status 1 when any failed.
'use strict';

const fs = require('fs');
const client = require('@sendgrid/client');
const CLIENT = 'node @sendgrid/client ' + require('@sendgrid/client/package.json').version;

function subst(v, saved) {
  if (typeof v === 'string') {
    for (const [k, s] of Object.entries(saved)) v = v.split('{' + k + '}').join(String(s));
    return v;
  }
  if (Array.isArray(v)) return v.map((x) => subst(x, saved));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, subst(x, saved)]));
  return v;
}

// mismatch says where got does not hold want (objects: want's keys; arrays:
// want's elements as a prefix), or returns null.
function mismatch(want, got, where = '$') {
  if (Array.isArray(want)) {
    if (!Array.isArray(got) || got.length < want.length) return `${where}: want an array of at least ${want.length}, got ${JSON.stringify(got)}`;
    for (let i = 0; i < want.length; i++) {
      const m = mismatch(want[i], got[i], `${where}[${i}]`);
      if (m) return m;
    }
    return null;
  }
  if (want && typeof want === 'object') {
    if (!got || typeof got !== 'object' || Array.isArray(got)) return `${where}: want an object, got ${JSON.stringify(got)}`;
    for (const [k, w] of Object.entries(want)) {
      if (!(k in got)) return `${where}.${k}: missing`;
      const m = mismatch(w, got[k], `${where}.${k}`);
      if (m) return m;
    }
    return null;
  }
  return want === got ? null : `${where}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`;
}

async function call(c, saved) {
  const req = { method: c.method, url: subst(c.path, saved) };
  if (c.query) req.qs = subst(c.query, saved);
  if ('body' in c) req.body = subst(c.body, saved);
  try {
    const [res, body] = await client.request(req);
    return [res.statusCode, body === '' ? null : body];
  } catch (err) {
    if (!err.response) throw err; // not an HTTP answer
    return [err.code, err.response.body];
  }
}

async function main() {
  const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')).cases;
  client.setApiKey(process.env.BOUNCER_KEY);
  client.setDefaultRequest('baseUrl', process.env.BOUNCER_URL);
  const saved = { msg: process.env.BOUNCER_MSG || '' };
  let failures = 0;
  for (const [i, c] of cases.entries()) {
    const what = `${CLIENT}: case ${i + 1} ${c.route} ${c.note || ''}`;
    let status, body;
    try {
      [status, body] = await call(c, saved);
      // "poll": a status that means "not yet": ask again, for a minute at most.
      for (let n = 0; 'poll' in c && status === c.poll && n < 120; n++) {
        await new Promise((r) => setTimeout(r, 500));
        [status, body] = await call(c, saved);
      }
    } catch (err) {
      console.log(`FAIL ${what}: ${err}`);
      failures++;
      continue;
    }
    let problem = null;
    if (status !== c.status) problem = `status ${status}, want ${c.status}: ${JSON.stringify(body).slice(0, 300)}`;
    else if ('length' in c && (!Array.isArray(body) || body.length !== c.length)) problem = `want ${c.length} entries, got ${JSON.stringify(body).slice(0, 300)}`;
    else if ('want' in c) {
      const m = mismatch(subst(c.want, saved), body);
      if (m) problem = `${m} in ${JSON.stringify(body).slice(0, 300)}`;
    }
    if (problem) {
      console.log(`FAIL ${what}: ${problem}`);
      failures++;
      continue;
    }
    for (const [name, field] of Object.entries(c.save || {})) saved[name] = body[field];
  }
  console.log(`${CLIENT}: ${cases.length} cases, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}

main().catch((err) => {
  console.log(`FAIL ${CLIENT}: ${err.stack || err}`);
  process.exit(1);
});
