// SMART App Launch 2.0 for the in-memory test server (`--smart`; with `--token`, the token it hands out is the one FHIR reads need): discovery at
// `/fhir/.well-known/smart-configuration`, an authorization endpoint that answers at once (no login
// page: the "user" approves everything) and a token endpoint that checks PKCE S256 and hands out
// the server's one bearer token. Enough for a browser test to complete a real EHR or standalone
// launch; not an authorization server for anything else.
//
// Control endpoints (no token): `POST /__smart/launch` {patient, appContext?} -> {launch} (what an
// EHR does before it opens the app; the last patient named is also the standalone launch's
// patient), `GET /__smart/log` -> {authorize: [query...], token: [{params..., pkce_ok}]},
// `POST /__smart/reset`.
import { createHash, randomBytes } from 'node:crypto';

const launches = new Map(); // launch id -> {patient, appContext}
const codes = new Map(); // code -> {client_id, redirect_uri, code_challenge, patient, appContext, scope}
const log = { authorize: [], token: [] };
let standalonePatient;

function b64url(buf) {
  return buf.toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function smartConfiguration(origin, base) {
  return {
    issuer: base,
    authorization_endpoint: `${origin}/oauth/authorize`,
    token_endpoint: `${origin}/oauth/token`,
    grant_types_supported: ['authorization_code'],
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['none'],
    scopes_supported: ['openid', 'fhirUser', 'launch', 'launch/patient', 'patient/*.rs', 'patient/*.read', 'offline_access'],
    capabilities: ['launch-ehr', 'launch-standalone', 'client-public', 'context-ehr-patient',
      'context-standalone-patient', 'permission-patient', 'permission-v2', 'permission-v1'],
  };
}

function redirectWith(res, target, params) {
  const url = new URL(target);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  res.writeHead(302, { Location: url.toString(), 'Content-Length': '0', 'Cache-Control': 'no-store' });
  res.end();
}

// Returns true when it answered the request.
export async function handleSmart(req, res, url, { base, token, sendJson, readBody }) {
  const path = url.pathname;
  const origin = new URL(base).origin;
  if (path === '/fhir/.well-known/smart-configuration' && req.method === 'GET') {
    sendJson(res, 200, smartConfiguration(origin, base));
    return true;
  }
  if (path === '/__smart/launch' && req.method === 'POST') {
    const body = JSON.parse((await readBody(req)).toString('utf8') || '{}');
    if (typeof body.patient !== 'string' || !body.patient) {
      sendJson(res, 400, { error: 'patient is required' });
      return true;
    }
    const launch = b64url(randomBytes(12));
    launches.set(launch, { patient: body.patient, appContext: body.appContext });
    standalonePatient = body.patient;
    sendJson(res, 200, { launch });
    return true;
  }
  if (path === '/__smart/log' && req.method === 'GET') {
    sendJson(res, 200, log);
    return true;
  }
  if (path === '/__smart/reset' && req.method === 'POST') {
    log.authorize.length = 0;
    log.token.length = 0;
    launches.clear();
    codes.clear();
    sendJson(res, 200, { ok: true });
    return true;
  }
  if (path === '/oauth/authorize' && req.method === 'GET') {
    const q = Object.fromEntries(url.searchParams);
    log.authorize.push(q);
    if (!q.redirect_uri || !/^https?:\/\//.test(q.redirect_uri)) {
      sendJson(res, 400, { error: 'invalid_request', error_description: 'redirect_uri is required' });
      return true;
    }
    const problem =
      q.response_type !== 'code' ? 'response_type must be code'
        : !q.client_id ? 'client_id is required'
          : !q.state ? 'state is required'
            : q.aud !== base ? `aud must be the FHIR base URL ${base}`
              : q.code_challenge_method !== 'S256' || !q.code_challenge ? 'PKCE with S256 is required'
                : q.launch && !launches.has(q.launch) ? 'unknown launch'
                  : !q.launch && !standalonePatient ? 'no patient to choose for a standalone launch'
                    : '';
    if (problem) {
      redirectWith(res, q.redirect_uri, { error: 'invalid_request', error_description: problem, state: q.state ?? '' });
      return true;
    }
    const context = q.launch ? launches.get(q.launch) : { patient: standalonePatient };
    const code = b64url(randomBytes(16));
    codes.set(code, { client_id: q.client_id, redirect_uri: q.redirect_uri, code_challenge: q.code_challenge,
      scope: q.scope ?? '', ...context });
    redirectWith(res, q.redirect_uri, { code, state: q.state });
    return true;
  }
  if (path === '/oauth/token' && req.method === 'POST') {
    const params = Object.fromEntries(new URLSearchParams((await readBody(req)).toString('utf8')));
    const grant = codes.get(params.code);
    const verifier = params.code_verifier ?? '';
    const pkceOk = Boolean(grant && verifier && b64url(createHash('sha256').update(verifier).digest()) === grant.code_challenge);
    log.token.push({ grant_type: params.grant_type, client_id: params.client_id, redirect_uri: params.redirect_uri,
      code_verifier_present: Boolean(verifier), pkce_ok: pkceOk });
    if (params.grant_type !== 'authorization_code' || !grant || grant.redirect_uri !== params.redirect_uri || !pkceOk) {
      sendJson(res, 400, { error: 'invalid_grant' });
      return true;
    }
    codes.delete(params.code); // a code is used once
    const answer = { access_token: token, token_type: 'Bearer', expires_in: 3600, scope: grant.scope,
      patient: grant.patient, need_patient_banner: true };
    if (grant.appContext !== undefined) answer.appContext = grant.appContext;
    sendJson(res, 200, answer);
    return true;
  }
  return false;
}
