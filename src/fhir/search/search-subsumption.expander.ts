import type { DataSource, EntityManager } from 'typeorm';
import { FhirError } from '../../common/fhir-error';
import type { AccessContext } from '../pipeline/access-context';
import { Clause, ParamClause, SearchRequestAst } from './search-request';
import { SearchSqlCompiler, SqlParams } from './search-sql.compiler';
import { MAX_EXPANSION } from './search-value-set.expander';

/**
 * Token `:below` (the code and every code it subsumes) and `:above` (the code and every code that
 * subsumes it), R4 search.html#modifiers, for code systems stored on this server: the closure is
 * computed in SQL by a recursive walk of `search_concept` (the hierarchy SearchIndexWriter keeps
 * for each stored CodeSystem) and attached to the clause as a code set, which the compiler binds
 * like a `:in` expansion. The CodeSystem is read through the request's AccessContext, as `:in`
 * reads ValueSets. Runs once per search, before compiling; nothing is cached between requests, so
 * a CodeSystem update changes the next search.
 */
export async function expandSubsumptionClauses(
  ast: SearchRequestAst,
  ctx: AccessContext,
  fhirBaseUrl: string,
  runner: DataSource | EntityManager,
): Promise<void> {
  const clauses: ParamClause[] = [];
  const visit = (c: Clause): void => {
    if (c.kind === 'untyped-chain') c.chains.forEach(visit);
    else if (c.kind !== 'param') visit(c.inner);
    else if (c.def.type === 'token' && (c.modifier === 'above' || c.modifier === 'below')) clauses.push(c);
  };
  for (const list of ast.clauses.values()) list.forEach(visit);
  for (const clause of clauses) {
    const name = `${clause.def.code}:${clause.modifier}`;
    const union = new Map<string, [string, string]>();
    for (const value of clause.values) {
      const [system, code] = splitToken(value);
      const codes = await closure(ctx, fhirBaseUrl, runner, system, code, clause.modifier as 'above' | 'below', name);
      for (const c of codes) union.set(`${system}\u0000${c}`, [system, c]);
      if (union.size > MAX_EXPANSION) {
        throw FhirError.badRequest(`${name}: more than ${MAX_EXPANSION} codes are ${clause.modifier} the values`, [name], 'too-costly');
      }
    }
    clause.valueSet = { system: [...union.values()].map(([s]) => s), code: [...union.values()].map(([, c]) => c) };
  }
}

/** `system|code` with `\|` and `\\` escapes (validated as two non-empty parts by the parser). */
function splitToken(value: string): [string, string] {
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\') i++;
    else if (value[i] === '|') return [unescape(value.slice(0, i)), unescape(value.slice(i + 1))];
  }
  return ['', unescape(value)];
}

function unescape(s: string): string {
  return s.replace(/\\([,|$\\])/g, '$1');
}

/**
 * One statement: the newest stored CodeSystem with this url that the requester may read, and the
 * code's closure in it (bounded; UNION stops at cycles). 400 when the code system is not stored
 * (subsumption cannot be decided, and equality alone would silently miss matches) or does not
 * define the code.
 */
async function closure(
  ctx: AccessContext,
  fhirBaseUrl: string,
  runner: DataSource | EntityManager,
  system: string,
  code: string,
  direction: 'above' | 'below',
  name: string,
): Promise<string[]> {
  const params = new SqlParams();
  const access = new SearchSqlCompiler(ctx, fhirBaseUrl, params).access('r');
  const cs = `(SELECT id FROM cs)`;
  const step =
    direction === 'below'
      ? `SELECT c.code FROM search_concept c JOIN closure k ON c.parent = k.code WHERE c.resource_type = 'CodeSystem' AND c.id = ${cs}`
      : `SELECT c.parent FROM search_concept c JOIN closure k ON c.code = k.code WHERE c.resource_type = 'CodeSystem' AND c.id = ${cs} AND c.parent IS NOT NULL`;
  const rows: { cs: string | null; codes: string[] }[] = await runner.query(
    `WITH RECURSIVE cs AS (
       SELECT r.id FROM resource r
        WHERE r.resource_type = 'CodeSystem' AND NOT r.deleted AND ${access}
          AND r.id IN (SELECT u.id FROM search_uri u WHERE u.resource_type = 'CodeSystem' AND u.param = 'url' AND u.uri = ${params.bind(system)})
        ORDER BY r.last_updated DESC LIMIT 1
     ),
     closure (code) AS (
       SELECT c.code FROM search_concept c WHERE c.resource_type = 'CodeSystem' AND c.id = ${cs} AND c.code = ${params.bind(code)}
       UNION
       ${step}
     )
     SELECT ${cs} AS cs, ARRAY(SELECT code FROM closure LIMIT ${params.bind(MAX_EXPANSION + 1)}) AS codes`,
    params.values,
  );
  const [row] = rows;
  if (!row?.cs) {
    throw FhirError.badRequest(`${name}: code system ${system} is not stored on this server, so what is ${direction} ${code} cannot be decided`, [name], 'not-supported');
  }
  if (!row.codes.length) throw FhirError.badRequest(`${name}: code ${code} is not defined in the CodeSystem ${system} stored on this server`, [name], 'code-invalid');
  if (row.codes.length > MAX_EXPANSION) {
    throw FhirError.badRequest(`${name}: more than ${MAX_EXPANSION} codes are ${direction} ${system}|${code}`, [name], 'too-costly');
  }
  return row.codes;
}
