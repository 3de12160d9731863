import type { Observation } from '@medplum/fhirtypes';
import type { AppConfig } from '../../config/app.config';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import { AccessContext } from '../pipeline/access-context';
import type { Principal } from '../pipeline/principal';
import { compositeComponentsOf, splitComposite } from './search-composite';
import { SearchIndexWriter } from './search-index.writer';
import { searchParamsOf } from './search-parameter.registry';
import { parseSearchRequest } from './search-request';
import { SearchSqlCompiler } from './search-sql.compiler';

beforeAll(() => FhirDefinitions.get());

describe('composite search parameters', () => {
  it('splits values on unescaped $ only', () => {
    expect(splitComposite('http://loinc.org|8480-6$lt60')).toEqual(['http://loinc.org|8480-6', 'lt60']);
    expect(splitComposite('a\\$b$c')).toEqual(['a\\$b', 'c']);
    expect(splitComposite('a$b$c')).toEqual(['a', 'b', 'c']);
  });

  it('resolves component definitions to their parameter types', () => {
    expect(searchParamsOf('Observation').get('component-code-value-quantity')?.components).toEqual([
      { type: 'token', expression: 'code' },
      { type: 'quantity', expression: 'value.ofType(Quantity)' },
    ]);
    expect(searchParamsOf('MolecularSequence').get('chromosome-variant-coordinate')?.components?.map((c) => c.type)).toEqual(['token', 'number', 'number']);
    expect(compositeComponentsOf({ resourceType: 'SearchParameter', code: 'x', type: 'composite', component: [{ definition: 'http://nowhere/x', expression: 'code' }, { definition: 'http://nowhere/y', expression: 'value' }] } as never)).toBeUndefined();
  });

  it('indexes one row per component, keeping each code with its own value', () => {
    const writer = new SearchIndexWriter({ fhirBaseUrl: 'http://hie/fhir' } as AppConfig);
    const bp: Observation = {
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '85354-9' }] },
      component: [
        { code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] }, valueQuantity: { value: 120, system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
        { code: { coding: [{ system: 'http://loinc.org', code: '8462-4' }] }, valueQuantity: { value: 80, system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
      ],
    };
    const rows = writer.extract(bp).composite.filter((r) => r[0] === 'component-code-value-quantity');
    expect(rows.map((r) => [r[2], r[8]])).toEqual([
      ['8480-6', 120],
      ['8462-4', 80],
    ]);
    // code-value-quantity is on Observation.value, which this panel has none of.
    expect(writer.extract(bp).composite.filter((r) => r[0] === 'code-value-quantity')).toEqual([]);
  });

  it('compiles every part to its component semantics with bound parameters only', () => {
    const ctx = AccessContext.claimIssuer()({
      principal: {} as Principal,
      read: [],
      write: [],
      lookups: { mayRead: () => true, lookup: () => Promise.reject(new Error('no lookups in this test')) },
    });
    const ast = parseSearchRequest(['Observation'], { 'component-code-value-quantity': "http://loinc.org|8480-6$gt100|http://unitsofmeasure.org|mm[Hg]'" }, { strict: true });
    const compiler = new SearchSqlCompiler(ctx, 'http://hie/fhir');
    const sql = compiler.where(ast);
    expect(sql).toContain('FROM search_composite');
    expect(sql).not.toContain('8480-6');
    expect(sql).not.toContain("mm[Hg]'");
    expect(compiler.params.values).toEqual(
      expect.arrayContaining(['Observation', 'component-code-value-quantity', '8480-6', 'http://loinc.org', 100, 'http://unitsofmeasure.org', "mm[Hg]'"]),
    );
    expect(sql).toMatch(/c1_code = \$\d+ AND \S+\.c1_system = \$\d+/);
    expect(sql).toMatch(/c2_number > \$\d+ AND \S+\.c2_system = \$\d+ AND \S+\.c2_code = \$\d+/);
  });

  it('rejects a composite value with the wrong number of parts, naming the parameter', () => {
    expect(() => parseSearchRequest(['Observation'], { 'code-value-quantity': '8480-6' }, { strict: true })).toThrow(
      expect.objectContaining({ status: 400, issues: [expect.objectContaining({ expression: ['code-value-quantity'] })] }),
    );
  });
});
