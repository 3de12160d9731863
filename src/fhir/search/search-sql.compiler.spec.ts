import { FhirError } from '../../common/fhir-error';
import { AccessContext } from '../pipeline/access-context';
import type { AccessFragment } from '../pipeline/access-predicate';
import type { Principal } from '../pipeline/principal';
import { SqlParams } from '../storage/sql-params';
import { dateCondition, decimalPrecisionRange, SearchSqlCompiler } from './search-sql.compiler';
import { ParamClause, parseSearchRequest, SearchRequestAst } from './search-request';
import { searchParamsOf } from './search-parameter.registry';

const issue = AccessContext.claimIssuer();
const context = (read: AccessFragment[] = []): AccessContext =>
  issue({
    principal: { kind: 'client', clientId: 'c1', organization: 'org-a', role: 'hospital', scopes: [] } as Principal,
    read,
    write: [],
    lookups: { mayRead: () => true, lookup: () => Promise.reject(new Error('none')) },
  });
const BASE = 'http://hie/fhir';
const oneLine = (sql: string): string => sql.replace(/\s+/g, ' ').trim();

/** The FhirError `fn` throws, to assert its status and issues (code, diagnostics, expression). */
function thrown(fn: () => unknown): FhirError {
  try {
    fn();
  } catch (e) {
    if (e instanceof FhirError) return e;
    throw e;
  }
  throw new Error('expected a FhirError');
}

/** One clause per query, compiled for alias `r`: [type, query, rendered SQL, bound parameters]. */
const CLAUSES: [string, Record<string, string>, string, unknown[]][] = [
  ["Patient", {"gender": "female"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.code = $3))",
    ["Patient", "gender", "female"]],
  ["Patient", {"gender": "http://hl7.org/fhir/administrative-gender|female"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.code = $3 AND x1.system = $4))",
    ["Patient", "gender", "female", "http://hl7.org/fhir/administrative-gender"]],
  ["Patient", {"identifier": "|X1"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.system IS NULL AND x1.code = $3))",
    ["Patient", "identifier", "X1"]],
  ["Patient", {"identifier": "urn:sys|"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.system = $3))",
    ["Patient", "identifier", "urn:sys"]],
  ["Patient", {"gender:not": "male"},
    "r.id NOT IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.code = $3))",
    ["Patient", "gender", "male"]],
  ["Patient", {"gender": "male,female"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.code = $3 OR x1.code = $4))",
    ["Patient", "gender", "male", "female"]],
  ["Patient", {"gender:missing": "true"},
    "r.id NOT IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2)",
    ["Patient", "gender"]],
  ["Patient", {"gender:missing": "false"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2)",
    ["Patient", "gender"]],
  ["Patient", {"identifier:of-type": "http://terminology.hl7.org/CodeSystem/v2-0203|MR|123"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.system = $3 AND x1.code = $4))",
    ["Patient", "identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR", "123"]],
  ["Patient", {"language:text": "Eng"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.display LIKE $3))",
    ["Patient", "language", "eng%"]],
  ["Patient", {"telecom": "Anna@Example.ORG"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.code = $3))",
    ["Patient", "telecom", "anna@example.org"]],
  ["Patient", {"name": "Ann_a%"},
    "r.id IN (SELECT x1.id FROM search_string x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.norm LIKE $3))",
    ["Patient", "name", "ann\\_a\\%%"]],
  ["Patient", {"name:exact": "Anna"},
    "r.id IN (SELECT x1.id FROM search_string x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.exact = $3))",
    ["Patient", "name", "Anna"]],
  ["Patient", {"name:contains": "nn"},
    "r.id IN (SELECT x1.id FROM search_string x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.norm LIKE $3))",
    ["Patient", "name", "%nn%"]],
  ["Patient", {"name": "a\\,b"},
    "r.id IN (SELECT x1.id FROM search_string x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.norm LIKE $3))",
    ["Patient", "name", "a,b%"]],
  ["Patient", {"_id": "p1,p2"},
    "r.id = ANY($1::text[])",
    [["p1", "p2"]]],
  ["Patient", {"_id:not": "p1"},
    "NOT (r.id = ANY($1::text[]))",
    [["p1"]]],
  ["Patient", {"_lastUpdated": "ge2020-01-01"},
    "(r.last_updated + interval '1 millisecond' > $1::timestamptz)",
    ["2020-01-01T00:00:00.000Z"]],
  ["Patient", {"birthdate": "2020"},
    "r.id IN (SELECT x1.id FROM search_date x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.low >= $3::timestamptz AND x1.low <= $4::timestamptz AND x1.high <= $5::timestamptz)))",
    ["Patient", "birthdate", "2020-01-01T00:00:00.000Z", "2021-01-01T00:00:00.000Z", "2021-01-01T00:00:00.000Z"]],
  ["Patient", {"birthdate": "ne2020-05"},
    "r.id IN (SELECT x1.id FROM search_date x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (NOT (x1.low >= $3::timestamptz AND x1.high <= $4::timestamptz)))",
    ["Patient", "birthdate", "2020-05-01T00:00:00.000Z", "2020-06-01T00:00:00.000Z"]],
  ["Patient", {"birthdate": "gt2020-05-01"},
    "r.id IN (SELECT x1.id FROM search_date x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.high > $3::timestamptz))",
    ["Patient", "birthdate", "2020-05-02T00:00:00.000Z"]],
  ["Patient", {"birthdate": "lt2020-05-01"},
    "r.id IN (SELECT x1.id FROM search_date x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.low < $3::timestamptz))",
    ["Patient", "birthdate", "2020-05-01T00:00:00.000Z"]],
  ["Patient", {"birthdate": "le2020"},
    "r.id IN (SELECT x1.id FROM search_date x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.low < $3::timestamptz))",
    ["Patient", "birthdate", "2021-01-01T00:00:00.000Z"]],
  ["Patient", {"birthdate": "sa2020"},
    "r.id IN (SELECT x1.id FROM search_date x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.low >= $3::timestamptz))",
    ["Patient", "birthdate", "2021-01-01T00:00:00.000Z"]],
  ["Patient", {"birthdate": "eb2020"},
    "r.id IN (SELECT x1.id FROM search_date x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.high <= $3::timestamptz))",
    ["Patient", "birthdate", "2020-01-01T00:00:00.000Z"]],
  ["Observation", {"value-quantity": "5.4"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", 5.35, 5.45]],
  ["Observation", {"value-quantity": "100"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", 99.5, 100.5]],
  ["Observation", {"value-quantity": "1e2"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", 50, 150]],
  ["Observation", {"value-quantity": "1.50e-1"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", 0.1495, 0.1505]],
  ["Observation", {"value-quantity": "gt5.4|http://unitsofmeasure.org|mg"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value > $3 AND x1.system = $4 AND x1.code = $5)))",
    ["Observation", "value-quantity", 5.4, "http://unitsofmeasure.org", "mg"]],
  ["Observation", {"value-quantity": "lt5||mg"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value < $3 AND x1.code = $4)))",
    ["Observation", "value-quantity", 5, "mg"]],
  ["Observation", {"value-quantity": "ge5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3)))",
    ["Observation", "value-quantity", 5]],
  ["Observation", {"value-quantity": "le5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value <= $3)))",
    ["Observation", "value-quantity", 5]],
  ["Observation", {"value-quantity": "sa5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value > $3)))",
    ["Observation", "value-quantity", 5]],
  ["Observation", {"value-quantity": "eb5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value < $3)))",
    ["Observation", "value-quantity", 5]],
  ["Observation", {"value-quantity": "ne5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((NOT (x1.value >= $3 AND x1.value < $4))))",
    ["Observation", "value-quantity", 4.5, 5.5]],
  ["Observation", {"value-quantity": "ap100"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value <= $4)))",
    ["Observation", "value-quantity", 90, 110]],
  ["Observation", {"value-quantity": "ap-100"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value <= $4)))",
    ["Observation", "value-quantity", -110, -90]],
  ["Observation", {"subject": "Patient/p1"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.target_type = $3 AND x1.target_id = $4))",
    ["Observation", "subject", "Patient", "p1"]],
  ["Observation", {"subject": "http://hie/fhir/Patient/p1"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.target_type = $3 AND x1.target_id = $4))",
    ["Observation", "subject", "Patient", "p1"]],
  ["Observation", {"subject": "http://other/fhir/Patient/p1"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.url = $3))",
    ["Observation", "subject", "http://other/fhir/Patient/p1"]],
  ["Observation", {"subject": "p1"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.target_id = $3))",
    ["Observation", "subject", "p1"]],
  ["Observation", {"subject:Patient": "p1"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.target_type = $3 AND x1.target_id = $4))",
    ["Observation", "subject", "Patient", "p1"]],
  ["Observation", {"subject": "Patient/p1/_history/2"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.target_type = $3 AND x1.target_id = $4))",
    ["Observation", "subject", "Patient", "p1"]],
  ["Observation", {"subject:identifier": "urn:mrn|42"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.code = $3 AND x1.system = $4))",
    ["Observation", "subject:identifier", "42", "urn:mrn"]],
  ["Observation", {"subject": "urn:uuid:1234"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.url = $3))",
    ["Observation", "subject", "urn:uuid:1234"]],
  ["ValueSet", {"url": "http://x/vs"},
    "r.id IN (SELECT x1.id FROM search_uri x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.uri = $3))",
    ["ValueSet", "url", "http://x/vs"]],
  ["ValueSet", {"url:below": "http://x/"},
    "r.id IN (SELECT x1.id FROM search_uri x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.uri LIKE $3))",
    ["ValueSet", "url", "http://x/%"]],
  ["ValueSet", {"url:above": "http://x/vs/1"},
    "r.id IN (SELECT x1.id FROM search_uri x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ($3 LIKE replace(replace(x1.uri, '%', '\\%'), '_', '\\_') || '%'))",
    ["ValueSet", "url", "http://x/vs/1"]],
  ["Observation", {"code-value-quantity": "http://loinc.org|29463-7$gt70|http://unitsofmeasure.org|kg"},
    "r.id IN (SELECT x1.id FROM search_composite x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.c1_code = $3 AND x1.c1_system = $4 AND (x1.c2_number > $5 AND x1.c2_system = $6 AND x1.c2_code = $7))))",
    ["Observation", "code-value-quantity", "29463-7", "http://loinc.org", 70, "http://unitsofmeasure.org", "kg"]],
  ["Observation", {"code-value-date": "21112-8$2020"},
    "r.id IN (SELECT x1.id FROM search_composite x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.c1_code = $3 AND (x1.c2_low >= $4::timestamptz AND x1.c2_low <= $5::timestamptz AND x1.c2_high <= $6::timestamptz))))",
    ["Observation", "code-value-date", "21112-8", "2020-01-01T00:00:00.000Z", "2021-01-01T00:00:00.000Z", "2021-01-01T00:00:00.000Z"]],
  ["Observation", {"code-value-string": "5778-6$Yel"},
    "r.id IN (SELECT x1.id FROM search_composite x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.c1_code = $3 AND x1.c2_code LIKE $4)))",
    ["Observation", "code-value-string", "5778-6", "yel%"]],
  ["RiskAssessment", {"probability": "0.25"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (((x1.value >= $3 AND x1.value < $4) OR (x1.value IS NULL AND (x1.low >= $5 AND x1.high < $6)))))",
    ["RiskAssessment", "probability", 0.245, 0.255, 0.245, 0.255]],
  ["Observation", {"subject:Patient.name": "anna"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND x1.target_type = $3 AND x1.target_id IN (SELECT x3.id FROM search_string x3 WHERE x3.resource_type = $4 AND x3.param = $5 AND (x3.norm LIKE $6) AND EXISTS (SELECT 1 FROM resource b2 WHERE b2.resource_type = x3.resource_type AND b2.id = x3.id AND NOT b2.deleted AND (TRUE))))",
    ["Observation", "subject", "Patient", "Patient", "name", "anna%"]],
  ["Patient", {"_has:Observation:subject:code": "1234"},
    "r.id IN (SELECT x1.target_id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND x1.target_type = $3 AND x1.id IN (SELECT x3.id FROM search_token x3 WHERE x3.resource_type = $4 AND x3.param = $5 AND (x3.code = $6) AND EXISTS (SELECT 1 FROM resource b2 WHERE b2.resource_type = x3.resource_type AND b2.id = x3.id AND NOT b2.deleted AND (TRUE))))",
    ["Observation", "subject", "Patient", "Observation", "code", "1234"]],
  ["Patient", {"_has:Observation:subject:code:not": "1234"},
    "r.id IN (SELECT x1.target_id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND x1.target_type = $3 AND x1.id IN (SELECT b2.id FROM resource b2 WHERE b2.resource_type = $7 AND NOT b2.deleted AND (TRUE) AND b2.id NOT IN (SELECT x3.id FROM search_token x3 WHERE x3.resource_type = $4 AND x3.param = $5 AND (x3.code = $6))))",
    ["Observation", "subject", "Patient", "Observation", "code", "1234", "Observation"]],
  ["Observation", {"value-quantity": "ne5.4"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((NOT (x1.value >= $3 AND x1.value < $4))))",
    ["Observation", "value-quantity", 5.35, 5.45]],
  ["Observation", {"value-quantity": "ap5.4"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value <= $4)))",
    ["Observation", "value-quantity", 4.86, 5.94]],
  ["Observation", {"value-quantity": "0.3"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", 0.25, 0.35]],
  ["Observation", {"value-quantity": "ap0"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value <= $4)))",
    ["Observation", "value-quantity", 0, 0]],
  ["Observation", {"value-quantity": "-2.5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", -2.55, -2.45]],
  ["Observation", {"value-quantity": "1.0E+2"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", 95, 105]],
  ["Observation", {"value-quantity": "+7"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", 6.5, 7.5]],
  // Range rows (value NULL): each prefix's own condition on low/high, ORed with the plain value's.
  ["Condition", {"onset-age": "ne5.5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (((NOT (x1.value >= $3 AND x1.value < $4)) OR (x1.value IS NULL AND NOT (x1.low >= $5 AND x1.high < $6)))))",
    ["Condition", "onset-age", 5.45, 5.55, 5.45, 5.55]],
  ["Condition", {"onset-age": "gt5|http://unitsofmeasure.org|a"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (((x1.value > $3 AND x1.system = $4 AND x1.code = $5) OR (x1.value IS NULL AND x1.high > $6 AND x1.system = $7 AND x1.code = $8))))",
    ["Condition", "onset-age", 5, "http://unitsofmeasure.org", "a", 5, "http://unitsofmeasure.org", "a"]],
  ["Condition", {"onset-age": "lt5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (((x1.value < $3) OR (x1.value IS NULL AND x1.low < $4))))",
    ["Condition", "onset-age", 5, 5]],
  ["Condition", {"onset-age": "ge5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (((x1.value >= $3) OR (x1.value IS NULL AND (x1.high >= $4 OR (x1.low >= $5 AND x1.high < $6))))))",
    ["Condition", "onset-age", 5, 5, 4.5, 5.5]],
  ["Condition", {"onset-age": "le5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (((x1.value <= $3) OR (x1.value IS NULL AND (x1.low <= $4 OR (x1.low >= $5 AND x1.high < $6))))))",
    ["Condition", "onset-age", 5, 5, 4.5, 5.5]],
  ["Condition", {"onset-age": "sa5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (((x1.value > $3) OR (x1.value IS NULL AND x1.low > $4))))",
    ["Condition", "onset-age", 5, 5]],
  ["Condition", {"onset-age": "eb5"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (((x1.value < $3) OR (x1.value IS NULL AND x1.high < $4))))",
    ["Condition", "onset-age", 5, 5]],
  ["Condition", {"onset-age": "ap-100"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (((x1.value >= $3 AND x1.value <= $4) OR (x1.value IS NULL AND x1.low <= $5 AND x1.high >= $6))))",
    ["Condition", "onset-age", -110, -90, -90, -110]],
  ["Condition", {"onset-age": "1.5e1"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (((x1.value >= $3 AND x1.value < $4) OR (x1.value IS NULL AND (x1.low >= $5 AND x1.high < $6)))))",
    ["Condition", "onset-age", 14.5, 15.5, 14.5, 15.5]],
  ["Condition", {"onset-age": "5||a"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (((x1.value >= $3 AND x1.value < $4 AND x1.code = $5) OR (x1.value IS NULL AND (x1.low >= $6 AND x1.high < $7) AND x1.code = $8))))",
    ["Condition", "onset-age", 4.5, 5.5, "a", 4.5, 5.5, "a"]],
  // Decimal bounds: a value a double cannot hold is bound as its text; precision from fraction and exponent.
  ["Observation", {"value-quantity": "ge0.1000000000000000055"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3)))",
    ["Observation", "value-quantity", "0.1000000000000000055"]],
  ["Observation", {"value-quantity": "-0.05"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", -0.055, -0.045]],
  ["Observation", {"value-quantity": "12.345e1"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", 123.445, 123.455]],
  ["Observation", {"value-quantity": "5e-3"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", 0.0045, 0.0055]],
  // Escapes: `\|` is no separator; LIKE metacharacters in the value are matched literally.
  ["Patient", {"identifier": "a\\|b|c"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.code = $3 AND x1.system = $4))",
    ["Patient", "identifier", "c", "a|b"]],
  ["Patient", {"telecom": "urn:X|Anna@X.ORG"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.code = $3 AND x1.system = $4))",
    ["Patient", "telecom", "anna@x.org", "urn:X"]],
  ["Patient", {"identifier:of-type": "http://s|MR|1\\,2"},
    "r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.system = $3 AND x1.code = $4))",
    ["Patient", "identifier:of-type", "http://s|MR", "1,2"]],
  ["Patient", {"name": "100\\%_\\\\x"},
    "r.id IN (SELECT x1.id FROM search_string x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.norm LIKE $3))",
    ["Patient", "name", "100\\\\\\%\\_\\\\x%"]],
  ["ValueSet", {"url:below": "http://x/a_b%"},
    "r.id IN (SELECT x1.id FROM search_uri x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.uri LIKE $3))",
    ["ValueSet", "url", "http://x/a\\_b\\%%"]],
  ["Observation", {"code-value-concept": "http://loinc.org|1$http://snomed|2"},
    "r.id IN (SELECT x1.id FROM search_composite x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.c1_code = $3 AND x1.c1_system = $4 AND x1.c2_code = $5 AND x1.c2_system = $6)))",
    ["Observation", "code-value-concept", "1", "http://loinc.org", "2", "http://snomed"]],
  ["Patient", {"_text:missing": "false"},
    "r.id IN (SELECT x1.id FROM search_text x1 WHERE x1.resource_type = $1 AND x1.narrative IS NOT NULL)",
    ["Patient"]],
  ["Patient", {"_lastUpdated": "2020"},
    "((r.last_updated >= $1::timestamptz AND r.last_updated <= $2::timestamptz AND r.last_updated + interval '1 millisecond' <= $3::timestamptz))",
    ["2020-01-01T00:00:00.000Z", "2021-01-01T00:00:00.000Z", "2021-01-01T00:00:00.000Z"]],
  // A chain without a type: one typed chain per target type that has the parameter, ORed.
  ["Observation", {"subject.name": "anna"},
    "(r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND x1.target_type = $3 AND x1.target_id IN (SELECT x3.id FROM search_string x3 WHERE x3.resource_type = $4 AND x3.param = $5 AND (x3.norm LIKE $6) AND EXISTS (SELECT 1 FROM resource b2 WHERE b2.resource_type = x3.resource_type AND b2.id = x3.id AND NOT b2.deleted AND (TRUE))))" +
    " OR r.id IN (SELECT x4.id FROM search_reference x4 WHERE x4.resource_type = $7 AND x4.param = $8 AND x4.target_type = $9 AND x4.target_id IN (SELECT x6.id FROM search_string x6 WHERE x6.resource_type = $10 AND x6.param = $11 AND (x6.norm LIKE $12) AND EXISTS (SELECT 1 FROM resource b5 WHERE b5.resource_type = x6.resource_type AND b5.id = x6.id AND NOT b5.deleted AND (TRUE)))))",
    ["Observation", "subject", "Patient", "Patient", "name", "anna%", "Observation", "subject", "Location", "Location", "name", "anna%"]],
  // An inner clause that is no index-row clause (a column, a further chain) filters `resource` rows.
  ["Patient", {"_has:Observation:subject:_id": "o1"},
    "r.id IN (SELECT x1.target_id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND x1.target_type = $3 AND x1.id IN (SELECT b2.id FROM resource b2 WHERE b2.resource_type = $4 AND NOT b2.deleted AND (TRUE) AND b2.id = ANY($5::text[])))",
    ["Observation", "subject", "Patient", "Observation", ["o1"]]],
  ["Observation", {"subject:Patient.organization.name": "acme"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND x1.target_type = $3 AND x1.target_id IN (SELECT b2.id FROM resource b2 WHERE b2.resource_type = $4 AND NOT b2.deleted AND (TRUE)" +
    " AND b2.id IN (SELECT x3.id FROM search_reference x3 WHERE x3.resource_type = $5 AND x3.param = $6 AND x3.target_type = $7 AND x3.target_id IN (SELECT x5.id FROM search_string x5 WHERE x5.resource_type = $8 AND x5.param = $9 AND (x5.norm LIKE $10) AND EXISTS (SELECT 1 FROM resource b4 WHERE b4.resource_type = x5.resource_type AND b4.id = x5.id AND NOT b4.deleted AND (TRUE))))))",
    ["Observation", "subject", "Patient", "Patient", "Patient", "organization", "Organization", "Organization", "name", "acme%"]],
  ["Observation", {"subject:Patient._text": "lung"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND x1.target_type = $3 AND x1.target_id IN (SELECT b2.id FROM resource b2 WHERE b2.resource_type = $4 AND NOT b2.deleted AND (TRUE)" +
    " AND b2.id IN (SELECT x3.id FROM search_text x3 WHERE x3.resource_type = $5 AND (x3.narrative @@ websearch_to_tsquery($6::regconfig, $7)))))",
    ["Observation", "subject", "Patient", "Patient", "Patient", "simple", "lung"]],
  ["Patient", {"_text": "a\\,b"},
    "r.id IN (SELECT x1.id FROM search_text x1 WHERE x1.resource_type = $1 AND (x1.narrative @@ websearch_to_tsquery($2::regconfig, $3)))",
    ["Patient", "simple", "a,b"]],
  ["Patient", {"name": "a\\$b"},
    "r.id IN (SELECT x1.id FROM search_string x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.norm LIKE $3))",
    ["Patient", "name", "a$b%"]],
  // Scale 0 (`1e1`: integer bounds); an exponent with a sign is no exact number, so its text is bound.
  ["Observation", {"value-quantity": "1e1"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", 5, 15]],
  ["Observation", {"value-quantity": "gt1e+2"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value > $3)))",
    ["Observation", "value-quantity", "1e+2"]],
  ["Observation", {"value-quantity": "1e10"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value >= $3 AND x1.value < $4)))",
    ["Observation", "value-quantity", 5000000000, 15000000000]],
  ["Observation", {"value-quantity": "gt+7"},
    "r.id IN (SELECT x1.id FROM search_quantity x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.value > $3)))",
    ["Observation", "value-quantity", 7]],
  ["Observation", {"subject": "Patient/p1/_history/12"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.target_type = $3 AND x1.target_id = $4))",
    ["Observation", "subject", "Patient", "p1"]],
  // Only this server's base (scheme included) makes an absolute URL a local reference.
  ["Observation", {"subject": "https://hie/fhir/Patient/p1"},
    "r.id IN (SELECT x1.id FROM search_reference x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.url = $3))",
    ["Observation", "subject", "https://hie/fhir/Patient/p1"]],
];

describe('search SQL compiler: rendered SQL and bound parameters per clause', () => {
  it.each(CLAUSES.map(([type, query, sql, params]) => [`${type}?${new URLSearchParams(query)}`, type, query, sql, params] as const))(
    '%s',
    (_name, type, query, sql, params) => {
      const ast = parseSearchRequest([type], query, { strict: true });
      const compiler = new SearchSqlCompiler(context(), BASE);
      const rendered = ast.clauses.get(type)!.map((c) => compiler.clause(c, 'r')).join(' AND ');
      expect(oneLine(rendered)).toBe(sql);
      expect(compiler.params.values).toEqual(params);
    },
  );

  it('never inlines a value: every value is a placeholder, every placeholder is bound once', () => {
    for (const [type, query] of CLAUSES) {
      const compiler = new SearchSqlCompiler(context(), BASE);
      const ast = parseSearchRequest([type], query, { strict: true });
      const sql = ast.clauses.get(type)!.map((c) => compiler.clause(c, 'r')).join(' AND ');
      const placeholders = [...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1]));
      expect(new Set(placeholders).size).toBe(compiler.params.values.length);
      for (const v of Object.values(query)) expect(sql).not.toContain(v);
    }
  });
});

describe('search SQL compiler: the whole WHERE condition', () => {
  it('ANDs the type, the clauses, not deleted and the access predicate', () => {
    const ast = parseSearchRequest(['Patient'], { gender: 'female', birthdate: 'lt2000' }, { strict: true });
    const hide: AccessFragment = { basis: 'consent', description: 'hide p9', render: (alias, bind) => `${alias}.id <> ${bind.bind('p9')}` };
    const compiler = new SearchSqlCompiler(context([hide]), BASE);
    expect(oneLine(compiler.where(ast))).toBe(
      '(r.resource_type = $1 AND r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $2 AND x1.param = $3 AND (x1.code = $4))' +
        ' AND r.id IN (SELECT x2.id FROM search_date x2 WHERE x2.resource_type = $5 AND x2.param = $6 AND (x2.low < $7::timestamptz)))' +
        ' AND NOT r.deleted AND ((r.id <> $8))',
    );
    expect(compiler.params.values).toEqual(['Patient', 'Patient', 'gender', 'female', 'Patient', 'birthdate', '2000-01-01T00:00:00.000Z', 'p9']);
  });

  it("ORs the types of a system search, each with its own clauses, and bounds a Patient compartment search to the person's Person-linked records", () => {
    const ast = parseSearchRequest(['Observation', 'Condition'], { _id: 'a' }, { strict: true, compartment: { type: 'Patient', id: 'p1' } });
    const compiler = new SearchSqlCompiler(context(), BASE);
    expect(oneLine(compiler.where(ast))).toBe(
      '((r.resource_type = $1 AND r.id = ANY($2::text[])) OR (r.resource_type = $3 AND r.id = ANY($4::text[])))' +
        ' AND NOT r.deleted AND (TRUE) AND r.compartments && (ARRAY[$5]::text[] || ARRAY(SELECT cl.linked_id FROM patient_link cl WHERE cl.patient_id = $5 AND cl.via_person))',
    );
    expect(compiler.params.values).toEqual(['Observation', ['a'], 'Condition', ['a'], 'p1']);
  });

  it(':missing on _id and _lastUpdated (always present) is a constant', () => {
    const compiler = new SearchSqlCompiler(context(), BASE);
    const render = (query: Record<string, string>): string =>
      compiler.clause(parseSearchRequest(['Patient'], query, { strict: true }).clauses.get('Patient')![0], 'r');
    expect(render({ '_id:missing': 'true' })).toBe('FALSE');
    expect(render({ '_id:missing': 'false' })).toBe('TRUE');
    expect(render({ '_lastUpdated:missing': 'true' })).toBe('FALSE');
    expect(render({ '_lastUpdated:missing': 'false' })).toBe('TRUE');
    expect(render({ _lastUpdated: 'lt2020,gt2030' })).toBe('(r.last_updated < $1::timestamptz OR r.last_updated + interval \'1 millisecond\' > $2::timestamptz)');
    expect(compiler.params.values).toEqual(['2020-01-01T00:00:00.000Z', '2031-01-01T00:00:00.000Z']);
  });

  it('token :below / :above bind the closure like an expansion; _text / _content are full-text conditions', () => {
    const ast = parseSearchRequest(['Observation'], { 'code:below': 'http://x/cs|A', _text: 'bone liver,kidney', '_content:missing': 'true' }, { strict: true });
    const [below, text, missing] = ast.clauses.get('Observation')! as ParamClause[];
    below.valueSet = { system: ['http://x/cs', 'http://x/cs'], code: ['A', 'B'] };
    const compiler = new SearchSqlCompiler(context(), BASE, undefined, 'english');
    expect(oneLine(compiler.clause(below, 'r'))).toBe(
      `r.id IN (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.system, x1.code) IN (SELECT v2.system, v2.code FROM unnest($3::text[], $4::text[]) AS v2(system, code)))`,
    );
    expect(oneLine(compiler.clause(text, 'r'))).toBe(
      `r.id IN (SELECT x3.id FROM search_text x3 WHERE x3.resource_type = $5 AND (x3.narrative @@ websearch_to_tsquery($6::regconfig, $7) OR x3.narrative @@ websearch_to_tsquery($6::regconfig, $8)))`,
    );
    expect(oneLine(compiler.clause(missing, 'r'))).toBe(`r.id NOT IN (SELECT x4.id FROM search_text x4 WHERE x4.resource_type = $9 AND x4.content IS NOT NULL)`);
    expect(compiler.params.values.slice(4)).toEqual(['Observation', 'english', 'bone liver', 'kidney', 'Observation']);
  });

  it(':in, :not-in and token :above bind the expansion as two arrays', () => {
    for (const [modifier, op, value] of [['in', 'IN', 'http://x/vs'], ['not-in', 'NOT IN', 'http://x/vs'], ['above', 'IN', 'http://x/cs|A']] as const) {
      const ast = parseSearchRequest(['Observation'], { [`code:${modifier}`]: value }, { strict: true });
      const clause = ast.clauses.get('Observation')![0] as ParamClause;
      const compiler = new SearchSqlCompiler(context(), BASE);
      expect(() => compiler.clause(clause, 'r')).toThrow(`ValueSet of code:${modifier} was not expanded before compiling`);
      clause.valueSet = { system: ['http://loinc.org'], code: ['1234-5'] };
      const fresh = new SearchSqlCompiler(context(), BASE);
      expect(oneLine(fresh.clause(clause, 'r'))).toBe(
        `r.id ${op} (SELECT x1.id FROM search_token x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND (x1.system, x1.code) IN (SELECT v2.system, v2.code FROM unnest($3::text[], $4::text[]) AS v2(system, code)))`,
      );
      expect(fresh.params.values).toEqual(['Observation', 'code', ['http://loinc.org'], ['1234-5']]);
    }
  });

  it('refuses a reference value that is no reference, naming the parameter', () => {
    // A URL inside the value, or `_history` without a version, does not make it a reference.
    for (const value of ['not a reference', 'foo http://x', 'Patient/p1/_history', 'see Patient/p1', 'Patient/p1 x']) {
      const ast = parseSearchRequest(['Observation'], { subject: value }, { strict: true });
      const compiler = new SearchSqlCompiler(context(), BASE);
      const err = thrown(() => compiler.clause(ast.clauses.get('Observation')![0], 'r'));
      expect(err.status).toBe(400);
      expect(err.issues).toEqual([{ severity: 'error', code: 'invalid', diagnostics: `subject: '${value}' is not a reference`, expression: ['subject'] }]);
    }
  });

  it('checks values the parser let through: composite parts, numbers, decimals', () => {
    const compiler = new SearchSqlCompiler(context(), BASE);
    const clause = (code: string, value: string): ParamClause => ({
      kind: 'param',
      resourceType: 'Observation',
      def: searchParamsOf('Observation').get(code)!,
      values: [value],
    });
    const composite = thrown(() => compiler.clause(clause('code-value-quantity', 'a$b$c'), 'r'));
    expect([composite.status, composite.issues]).toEqual([
      400,
      [{ severity: 'error', code: 'invalid', diagnostics: "code-value-quantity: 'a$b$c' needs 2 parts separated by $", expression: ['code-value-quantity'] }],
    ]);
    const nan = thrown(() => compiler.clause(clause('value-quantity', 'gtabc'), 'r'));
    expect([nan.status, nan.issues]).toEqual([
      400,
      [{ severity: 'error', code: 'invalid', diagnostics: "value-quantity: 'gtabc' is not a number", expression: ['value-quantity'] }],
    ]);
    expect(() => compiler.clause(clause('value-quantity', 'Infinity'), 'r')).toThrow("value-quantity: 'Infinity' is not a number");
    // A finite Number() that is no decimal as FHIR writes it is a programming error, not a bound value.
    for (const text of ['0x10', '.5', '5.', ' 5']) expect(() => compiler.clause(clause('value-quantity', text), 'r')).toThrow(`not a decimal: ${text}`);
  });

  it('a type without a clause list is bounded by its type alone', () => {
    const compiler = new SearchSqlCompiler(context(), BASE);
    const ast = { resourceTypes: ['Patient'], clauses: new Map(), sort: [] } as unknown as SearchRequestAst;
    expect(oneLine(compiler.where(ast))).toBe('(r.resource_type = $1) AND NOT r.deleted AND (TRUE)');
    expect(compiler.params.values).toEqual(['Patient']);
  });

  it('needs an access context for chains and _has, and says so', () => {
    const ast = parseSearchRequest(['Observation'], { 'subject:Patient.name': 'anna' }, { strict: true });
    expect(() => new SearchSqlCompiler(undefined, BASE).where(ast)).toThrow('Chained and _has clauses need an access context');
  });

  it('composite number components compare with the prefix, like a number parameter', () => {
    const def = searchParamsOf('Observation').get('code-value-quantity')!;
    const withNumber: ParamClause = {
      kind: 'param',
      resourceType: 'Observation',
      def: { ...def, code: 'x-num', components: [{ type: 'token', expression: 'a' }, { type: 'number', expression: 'b' }] },
      values: ['c1$gt5'],
    };
    const compiler = new SearchSqlCompiler(context(), BASE);
    expect(oneLine(compiler.clause(withNumber, 'r'))).toBe(
      'r.id IN (SELECT x1.id FROM search_composite x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.c1_code = $3 AND (x1.c2_number > $4))))',
    );
    expect(compiler.params.values).toEqual(['Observation', 'x-num', 'c1', 5]);
  });

  it('composite reference and uri components: local reference, bare id, other URL', () => {
    const def = searchParamsOf('Observation').get('code-value-quantity')!;
    const withRef: ParamClause = {
      kind: 'param',
      resourceType: 'Observation',
      def: { ...def, code: 'x-ref', components: [{ type: 'reference', expression: 'a' }, { type: 'uri', expression: 'b' }] },
      values: ['Patient/p1$http://u', 'http://hie/fhir/Patient/p2$u', 'p3$u', 'http://elsewhere/Patient/p4$u', 'a b$u', 'see Patient/p5$u', 'Patient/p6 x$u'],
    };
    const compiler = new SearchSqlCompiler(context(), BASE);
    expect(oneLine(compiler.clause(withRef, 'r'))).toBe(
      'r.id IN (SELECT x1.id FROM search_composite x1 WHERE x1.resource_type = $1 AND x1.param = $2 AND ((x1.c1_code = $3 AND x1.c2_code = $4)' +
        ' OR (x1.c1_code = $5 AND x1.c2_code = $6) OR (x1.c1_code LIKE $7 AND x1.c2_code = $8) OR (x1.c1_code = $9 AND x1.c2_code = $10) OR (x1.c1_code = $11 AND x1.c2_code = $12)' +
        ' OR (x1.c1_code = $13 AND x1.c2_code = $14) OR (x1.c1_code = $15 AND x1.c2_code = $16)))',
    );
    expect(compiler.params.values).toEqual([
      'Observation', 'x-ref', 'Patient/p1', 'http://u', 'Patient/p2', 'u', '%/p3', 'u', 'http://elsewhere/Patient/p4', 'u', 'a b', 'u',
      // Text around a reference keeps it from being one: compared as written.
      'see Patient/p5', 'u', 'Patient/p6 x', 'u',
    ]);
  });
});

describe('search SQL compiler: sort keys', () => {
  it('sorts by id, lastUpdated and by the lowest indexed value ascending, the highest descending; no value is NULL (last)', () => {
    const compiler = new SearchSqlCompiler(context(), BASE);
    const keysOf = (sort: string) =>
      compiler.sortExpressions(parseSearchRequest(['Observation'], { _sort: sort }, { strict: true })).map((k) => ({ ...k, expr: oneLine(k.expr) }));
    const keys = [...keysOf('_id,-_lastUpdated,-date,value-quantity'), ...keysOf('code,subject,-status')];
    const sub = (n: number, agg: string, table: string, p: number): string =>
      `(SELECT ${agg.replace('(', `(s${n}.`)} FROM ${table} s${n} WHERE s${n}.resource_type = r.resource_type AND s${n}.id = r.id AND s${n}.param = $${p})`;
    expect(keys).toEqual([
      { expr: 'r.id', descending: false, cast: 'text' },
      { expr: 'r.last_updated', descending: true, cast: 'timestamptz' },
      { expr: sub(1, 'max(high)', 'search_date', 1), descending: true, cast: 'timestamptz', nullable: true },
      { expr: sub(2, 'min(value)', 'search_quantity', 2), descending: false, cast: 'numeric', nullable: true },
      { expr: sub(3, 'min(code)', 'search_token', 3), descending: false, cast: 'text', nullable: true },
      { expr: sub(4, 'min(target_id)', 'search_reference', 4), descending: false, cast: 'text', nullable: true },
      { expr: sub(5, 'max(code)', 'search_token', 5), descending: true, cast: 'text', nullable: true },
    ]);
    expect(compiler.params.values).toEqual(['date', 'value-quantity', 'code', 'subject', 'status']);
  });

  it('refuses a sort key no index table serves', () => {
    const compiler = new SearchSqlCompiler(context(), BASE);
    const def = searchParamsOf('Observation').get('code-value-quantity')!;
    const err = thrown(() => compiler.sortExpressions({ sort: [{ def, descending: false }] } as unknown as SearchRequestAst));
    expect([err.status, err.issues]).toEqual([
      400,
      [{ severity: 'error', code: 'invalid', diagnostics: "Cannot sort by parameter 'code-value-quantity'", expression: ['_sort'] }],
    ]);
    expect(compiler.params.values).toEqual([]);
  });

  it('ascending dates use the low end; strings the normalized form; uris the uri', () => {
    const compiler = new SearchSqlCompiler(context(), BASE);
    const date = compiler.sortExpressions(parseSearchRequest(['Patient'], { _sort: 'birthdate,name' }, { strict: true }));
    expect(oneLine(date[0].expr)).toContain('SELECT min(s1.low) FROM search_date s1');
    expect(oneLine(date[1].expr)).toBe('(SELECT min(s2.norm) FROM search_string s2 WHERE s2.resource_type = r.resource_type AND s2.id = r.id AND s2.param = $2)');
    const uri = compiler.sortExpressions(parseSearchRequest(['ValueSet'], { _sort: '-url' }, { strict: true }));
    expect(oneLine(uri[0].expr)).toBe('(SELECT max(s3.uri) FROM search_uri s3 WHERE s3.resource_type = r.resource_type AND s3.id = r.id AND s3.param = $3)');
  });
});

describe('date conditions: prefixes over a stored range [low, high)', () => {
  const render = (raw: string, point = false): [string, unknown[]] => {
    const p = new SqlParams();
    return [dateCondition('lo', 'hi', raw, (v) => p.bind(v), 'd', point), p.values];
  };
  const D = '2020-05-01T00:00:00.000Z';
  const D1 = '2020-05-02T00:00:00.000Z';

  it.each([
    ['2020-05-01', '(lo >= $1::timestamptz AND lo <= $2::timestamptz AND hi <= $3::timestamptz)', [D, D1, D1]],
    ['eq2020-05-01', '(lo >= $1::timestamptz AND lo <= $2::timestamptz AND hi <= $3::timestamptz)', [D, D1, D1]],
    ['ne2020-05-01', 'NOT (lo >= $1::timestamptz AND hi <= $2::timestamptz)', [D, D1]],
    ['gt2020-05-01', 'hi > $1::timestamptz', [D1]],
    ['lt2020-05-01', 'lo < $1::timestamptz', [D]],
    ['ge2020-05-01', 'hi > $1::timestamptz', [D]],
    ['le2020-05-01', 'lo < $1::timestamptz', [D1]],
    ['sa2020-05-01', 'lo >= $1::timestamptz', [D1]],
    ['eb2020-05-01', 'hi <= $1::timestamptz', [D]],
  ])('%s', (raw, sql, params) => {
    expect(render(raw)).toEqual([sql, params]);
  });

  it('on an instant column (point) the high end is one millisecond after it', () => {
    expect(render('gt2020-05-01', true)).toEqual(["hi + interval '1 millisecond' > $1::timestamptz", [D1]]);
    expect(render('eb2020-05-01', true)).toEqual(["hi + interval '1 millisecond' <= $1::timestamptz", [D]]);
    expect(render('lt2020-05-01', true)).toEqual(['lo < $1::timestamptz', [D]]);
  });

  it('ap is within 10% of the distance from now, at least a day either side', () => {
    const now = jest.spyOn(Date, 'now').mockReturnValue(Date.parse('2030-05-01T00:00:00.000Z'));
    try {
      // 10 years before "now": a spread of 10% of that distance (365.3 days).
      const spread = (Date.parse('2030-05-01T00:00:00.000Z') - Date.parse(D)) * 0.1;
      expect(render('ap2020-05-01')).toEqual([
        '(lo < $2::timestamptz AND hi > $1::timestamptz)',
        [new Date(Date.parse(D) - spread).toISOString(), new Date(Date.parse(D1) + spread).toISOString()],
      ]);
      // Close to now: the spread is one day.
      now.mockReturnValue(Date.parse('2020-05-01T12:00:00.000Z'));
      expect(render('ap2020-05-01')).toEqual(['(lo < $2::timestamptz AND hi > $1::timestamptz)', ['2020-04-30T00:00:00.000Z', '2020-05-03T00:00:00.000Z']]);
    } finally {
      now.mockRestore();
    }
  });

  it('refuses a value that is no date, naming the parameter', () => {
    const err = thrown(() => render('ge2020-02-30'));
    expect([err.status, err.issues]).toEqual([400, [{ severity: 'error', code: 'invalid', diagnostics: "d: 'ge2020-02-30' is not a valid date", expression: ['d'] }]]);
    expect(render('ge2020-02-29')[1]).toEqual(['2020-02-29T00:00:00.000Z']);
  });
});

// A number's implicit precision (search.html#number), on FHIR JSON decimals' source text.
describe('decimal precision ranges', () => {
  it.each([
    ['100', [99.5, 100.5]],
    ['1.5', [1.45, 1.55]],
    ['1.50', [1.495, 1.505]],
    ['1e2', [50, 150]],
    ['1.50e-1', [0.1495, 0.1505]],
    ['-5.4', [-5.45, -5.35]],
    ['+2', [1.5, 2.5]],
    ['0.1000000000000000055511151231257827', ['0.10000000000000000555111512312578265', '0.10000000000000000555111512312578275']],
  ])('the implicit precision range of %s, exact', (text, range) => {
    expect(decimalPrecisionRange(text)).toEqual(range);
  });
});
