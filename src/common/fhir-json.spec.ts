import { cloneJson, decimalFromText, decimalMarker, decimalNumber, decimalText, decodeDecimals, encodeDecimals, isRawDecimal, numericView, parseJsonKeepingDecimals, plainDecimal } from './fhir-json';

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

describe('FHIR JSON decimals: the edges', () => {
  const raw = (text: string) => parseJsonKeepingDecimals(`[${text}]`) as [unknown];

  it('reads a decimal as a number or as its text, plain or raw', () => {
    const [kept] = raw('1.50');
    expect([decimalNumber(1.5), decimalNumber(kept as never), decimalText(1.5), decimalText(kept as never)]).toEqual([1.5, 1.5, '1.5', '1.50']);
    expect([isRawDecimal(1.5), isRawDecimal(null), isRawDecimal({ rawJSON: '1.50' }), isRawDecimal('1.50')]).toEqual([false, false, false, false]);
  });

  it('a decimal from XML text: a number when that keeps the text, else raw in plain notation', () => {
    const values = ['1.5', '1.50', '1.5e1', '-0'].map(decimalFromText);
    expect(values.map((v) => [typeof v, JSON.stringify(v)])).toEqual([
      ['number', '1.5'],
      ['object', '1.50'],
      ['object', '15'],
      ['object', '0'],
    ]);
  });

  it.each([
    ['0e5', '0'],
    ['-0.0e1', '0'],
    ['-0.00e1', '0.0'],
    ['12e-1', '1.2'],
    ['0.05e1', '0.5'],
    ['-5E0', '-5'],
    ['1e-1', '0.1'],
    ['-1.5e-3', '-0.0015'],
    ['15e-2', '0.15'],
    ['1.5e10', '15000000000'],
    ['-0.000e1', '0.00'],
    ['1.25e1', '12.5'],
    ['-0.10', '-0.10'],
    ['-0.', '-0.'],
    ['-00', '-00'],
    ['x1e2', 'x1e2'],
    ['1e2x', '1e2x'],
  ])('plain notation of %s is %s', (text, plain) => {
    expect(plainDecimal(text)).toBe(plain);
  });

  it.each([
    // [JSON text, whether the reviver runs]: numbers after ':', ',' or '[' that a JS number may change.
    ['{"a":-0}', true],
    ['{"a": -0 }', true],
    ['[-0]', true],
    ['[1,-0]', true],
    ['[-0.5]', false],
    ['[1.0]', true],
    ['[1.0 ]', true],
    ['{"a": 1.10}', true],
    ['[1.10,2]', true],
    ['[10.50]', true],
    ['[-1.10]', true],
    ['[1.01]', false],
    ['[10]', false],
    ['[1E5]', true],
    ['[-2e3]', true],
    ['[1.5e3]', true],
    ['[1234567890123456]', true],
    ['[123456789012345]', false],
    ['[0.1234567890123]', false],
    ['[0.12345678901234]', true],
    ['[0.000001]', true],
    ['[0.00001]', false],
    ['{"a": "x", "e": "1e5"}', false],
    ['[ 1.0]', true],
    ['{"a":\n1.0}', true],
  ])('%s needs the reviver: %s', (text, slow) => {
    const spy = jest.spyOn(JSON, 'parse');
    try {
      parseJsonKeepingDecimals(text);
      expect(spy.mock.calls[0][1] !== undefined).toBe(slow);
    } finally {
      spy.mockRestore();
    }
  });

  it('JSON nested too deep for the reviver is parsed without it (numbers as JS numbers); bad JSON still throws', () => {
    const depth = 20000;
    let node = parseJsonKeepingDecimals(`${'['.repeat(depth)}1.50${']'.repeat(depth)}`);
    for (let i = 0; i < depth; i++) node = (node as unknown[])[0];
    expect(node).toBe(1.5);
    expect(() => parseJsonKeepingDecimals('{"a": 1.50,')).toThrow(SyntaxError);
  });

  it('clones deeply, sharing only the immutable raw decimals', () => {
    const value = parseJsonKeepingDecimals('{"a": [1.50, {"b": null}], "c": "s", "d": true}') as { a: [unknown, object] };
    const copy = cloneJson(value);
    expect(JSON.stringify(copy)).toBe('{"a":[1.50,{"b":null}],"c":"s","d":true}');
    expect(copy).not.toBe(value);
    expect(copy.a).not.toBe(value.a);
    expect(copy.a[1]).not.toBe(value.a[1]);
    expect(copy.a[0]).toBe(value.a[0]);
  });

  it('the numeric view maps two raw texts of one number to the first text, inside arrays too', () => {
    const value = parseJsonKeepingDecimals('{"a": [1.50, 1.500, 7], "b": [2, 3]}') as { a: unknown[]; b: unknown[] };
    const { view, decimals } = numericView(value);
    expect(view).toEqual({ a: [1.5, 1.5, 7], b: [2, 3] });
    expect(view.b).toBe(value.b);
    expect([...decimals].map(([n, text]) => [n, JSON.stringify(text)])).toEqual([[1.5, '1.50']]);
    expect(numericView(null).view).toBeNull();
  });

  it('the decimal marker is a NUL-led random token, different per call', () => {
    const marker = decimalMarker();
    expect(marker).toMatch(/^\u0000decimal:[0-9a-f-]{36}:$/);
    expect(decimalMarker()).not.toBe(marker);
  });
});
