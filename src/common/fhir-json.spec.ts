import { decimalMarker, decodeDecimals, encodeDecimals, isRawDecimal, numericView, parseJsonKeepingDecimals, plainDecimal } from './fhir-json';

describe('FHIR JSON decimals', () => {
  it('parses numbers that a JS number would change as raw JSON, and writes them back verbatim', () => {
    const text = '{"a": 1.50, "b": [0.0, 100.00, 0.1000000000000000055511151231257827, 12345678901234567890, -0.0, 72, 1.5, -3], "c": "x: 1.50"}';
    const parsed = parseJsonKeepingDecimals(text) as { a: unknown; b: unknown[]; c: string };
    expect(isRawDecimal(parsed.a)).toBe(true);
    expect(parsed.b.slice(5)).toEqual([72, 1.5, -3]);
    expect(parsed.c).toBe('x: 1.50');
    expect(JSON.stringify(parsed)).toBe('{"a":1.50,"b":[0.0,100.00,0.1000000000000000055511151231257827,12345678901234567890,0.0,72,1.5,-3],"c":"x: 1.50"}');
  });

  it('leaves JSON whose numbers all survive as plain numbers (the fast path)', () => {
    const parsed = parseJsonKeepingDecimals('{"a": [1.5, 2, -0.25], "s": "1.50"}') as { a: unknown[] };
    expect(parsed).toEqual({ a: [1.5, 2, -0.25], s: '1.50' });
  });

  it('runs the reviver only when a number may need it: not for lastUpdated times, integers or numbers in strings', () => {
    const spy = jest.spyOn(JSON, 'parse');
    try {
      const fast = ['{"meta": {"lastUpdated": "2026-11-30T16:02:29.410Z"}, "a": [100, 0, 2.5, -7], "t": "a, e"}', '[0.00001, 123456789012345]'];
      const slow = ['{"a": 1.50}', '{"a": [1e2]}', '{"a": 0.0000001}', '{"a": -0}', '{"a": 12345678.123456789}', '[1.0]'];
      for (const text of [...fast, ...slow]) parseJsonKeepingDecimals(text);
      expect(spy.mock.calls.map((c) => c[1] !== undefined)).toEqual([...fast.map(() => false), ...slow.map(() => true)]);
    } finally {
      spy.mockRestore();
    }
  });

  it.each([
    ['1e2', '100'],
    ['1.50e1', '15.0'],
    ['2.5E-3', '0.0025'],
    ['-1.5e+3', '-1500'],
    ['0.5e1', '5'],
    ['-0', '0'],
    ['-0.00', '0.00'],
    ['1.50', '1.50'],
  ])('the exponent form and negative zero as PostgreSQL numeric stores them: %s -> %s', (text, plain) => {
    expect(plainDecimal(text)).toBe(plain);
  });

  it('the numeric view replaces raw decimals by numbers, shares untouched parts, and maps numbers to their text', () => {
    const resource = parseJsonKeepingDecimals('{"resourceType": "Observation", "code": {"text": "x"}, "valueQuantity": {"value": 1.50}, "component": [{"v": 2}]}') as Record<string, unknown>;
    const { view, decimals } = numericView(resource);
    expect(view).toEqual({ resourceType: 'Observation', code: { text: 'x' }, valueQuantity: { value: 1.5 }, component: [{ v: 2 }] });
    expect(view.code).toBe(resource.code);
    expect(view.component).toBe(resource.component);
    expect(view.valueQuantity).not.toBe(resource.valueQuantity);
    expect(JSON.stringify(decimals.get(1.5))).toBe('1.50');
    expect(numericView(view).view).toBe(view);
  });

  it('encodes raw decimals as marked strings and decodes them, in full copies', () => {
    const value = parseJsonKeepingDecimals('{"a": [1.50, 2], "b": "1.50"}') as Record<string, unknown>;
    const marker = decimalMarker();
    const encoded = encodeDecimals(value, marker);
    expect(encoded).toEqual({ a: [`${marker}1.50`, 2], b: '1.50' });
    expect(encoded.a).not.toBe(value.a);
    expect(JSON.stringify(decodeDecimals(encoded, marker))).toBe('{"a":[1.50,2],"b":"1.50"}');
    // Another call's marker decodes nothing.
    expect(decodeDecimals(encoded, decimalMarker())).toEqual(encoded);
  });
});
