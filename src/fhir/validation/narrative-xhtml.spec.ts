import { narrativeDivIssues, narrativeIssues } from './narrative-xhtml';

const NS = 'xmlns="http://www.w3.org/1999/xhtml"';
const div = (inner: string) => `<div ${NS}>${inner}</div>`;
const refusal = (div: string) => narrativeDivIssues(div, 'Patient.text.div').filter((i) => i.severity === 'error').map((i) => i.diagnostics);

describe('narrative XHTML (R4 txt-1, txt-2)', () => {
  it.each([
    ['paragraphs, lists and a table', div('<p>Anna <b>Müller</b>, <i>born</i> 1980</p><ul><li>one</li></ul><table border="1" cellpadding="2"><tr><th scope="col">a</th><td colspan="2" style="color: red">b</td></tr></table>')],
    ['links by href and name, and a fragment', div('<a href="https://example.org/x?a=1&amp;b=2">x</a><a name="top">t</a><a href="#top">up</a><a href="Patient/123">p</a>')],
    ['an image by URL, fragment or inline data', div('<img src="http://example.org/a.png" alt="a"/><img src="#pic"/><img src="data:image/png;base64,iVBORw0KGgo="/>')],
    ['entities and a comment', div('&lt;script&gt; is text here &amp; &#169; <!-- a comment -->x')],
    ['a mailto and a tel link', div('<a href="mailto:a@example.org">m</a> <a href="tel:+4112345">t</a>')],
  ])('accepts %s', (_name, xhtml) => {
    expect(narrativeDivIssues(xhtml, 'Patient.text.div')).toEqual([]);
  });

  it.each([
    ['a script element', div('<p>x</p><script>alert(1)</script>'), 'The element <script> is not allowed in a narrative (R4 txt-1)'],
    ['an iframe', div('<iframe src="https://evil.example"></iframe>'), 'The element <iframe> is not allowed in a narrative (R4 txt-1)'],
    ['a form', div('<form><input name="x"/></form>'), 'The element <form> is not allowed in a narrative (R4 txt-1)'],
    ['an object', div('<object data="x.swf"></object>'), 'The element <object> is not allowed in a narrative (R4 txt-1)'],
    ['a base', div('<base href="https://evil.example/"/>x'), 'The element <base> is not allowed in a narrative (R4 txt-1)'],
    ['a link', div('<link rel="stylesheet" href="https://evil.example/a.css"/>x'), 'The element <link> is not allowed in a narrative (R4 txt-1)'],
    ['a style element', div('<style>p { color: red }</style>x'), 'The element <style> is not allowed in a narrative (R4 txt-1)'],
    ['an SVG element', div('<svg><script>alert(1)</script></svg>'), 'The element <svg> is not allowed in a narrative (R4 txt-1)'],
    ['ins (HTML 4.0 9.4, excluded)', div('<ins>x</ins>'), 'The element <ins> is not allowed in a narrative (R4 txt-1)'],
    ['an onclick attribute', div('<p onclick="alert(1)">x</p>'), 'The attribute onclick of <p> is not allowed in a narrative (R4 txt-1)'],
    ['an onerror attribute on an image', div('<img src="x.png" onerror="alert(1)"/>'), 'The attribute onerror of <img> is not allowed in a narrative (R4 txt-1)'],
    ['an xlink:href', div('<a xlink:href="javascript:alert(1)">x</a>'), 'The attribute xlink:href of <a> is not allowed in a narrative (R4 txt-1)'],
    ['a javascript: href', div('<a href="javascript:alert(1)">x</a>'), 'The URL in the attribute href of <a> has a scheme that is not allowed (R4 txt-1)'],
    ['a javascript: href in capitals with whitespace', div('<a href=" JaVa&#x09;ScRiPt:alert(1)">x</a>'), 'The URL in the attribute href of <a> has a scheme that is not allowed (R4 txt-1)'],
    ['a javascript: href as character references', div('<a href="&#106;avascript&#58;alert(1)">x</a>'), 'The URL in the attribute href of <a> has a scheme that is not allowed (R4 txt-1)'],
    ['an HTML entity in the scheme', div('<a href="javascript&amp;colon;alert(1)">x</a>'), 'The URL in the attribute href of <a> has a scheme that is not allowed (R4 txt-1)'],
    ['a vbscript: image', div('<img src="vbscript:msgbox(1)"/>'), 'The URL in the attribute src of <img> has a scheme that is not allowed (R4 txt-1)'],
    ['a data: link', div('<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>'), 'The URL in the attribute href of <a> has a scheme that is not allowed (R4 txt-1)'],
    ['an SVG data: image', div('<img src="data:image/svg+xml;base64,PHN2Zz4="/>'), 'The URL in the attribute src of <img> has a scheme that is not allowed (R4 txt-1)'],
    ['CSS expression()', div('<p style="width: expression(alert(1))">x</p>'), 'The style of <p> holds active content (R4 txt-1)'],
    ['a javascript: URL in CSS', div('<p style="background: url(&#39;javascript:alert(1)&#39;)">x</p>'), 'The style of <p> holds active content (R4 txt-1)'],
    ['a CDATA section', div('<![CDATA[><script>alert(1)</script>]]>'), 'The narrative may not contain a CDATA section (an HTML reader sees markup in it) (R4 txt-1)'],
    ['a processing instruction', div('<?xml-stylesheet href="x.xsl"?>x'), 'The narrative may not contain the processing instruction <?xml-stylesheet> (R4 txt-1)'],
    ['a DOCTYPE', `<!DOCTYPE div [<!ENTITY a "b">]>${div('&a;')}`, 'The narrative may not contain a DOCTYPE (R4 txt-1)'],
    ['a root that is not a div', `<p ${NS}>x</p>`, 'The narrative must be a single div element (R4 txt-1)'],
    ['a div outside the XHTML namespace', '<div>x</div>', 'The narrative div must be in the XHTML namespace (xmlns="http://www.w3.org/1999/xhtml") (R4 txt-1)'],
    ['another namespace inside', div('<p xmlns="http://www.w3.org/2000/svg">x</p>'), 'The attribute xmlns of <p> must be the XHTML namespace (R4 txt-1)'],
  ])('refuses %s, naming it', (_name, xhtml, diagnostics) => {
    expect(refusal(xhtml)).toEqual([diagnostics]);
  });

  it('refuses XML that is not well-formed, saying where', () => {
    expect(refusal(div('<p>x'))).toEqual([expect.stringMatching(/^The narrative is not well-formed XHTML \(.*line 1, column \d+\) \(R4 txt-1\)$/)]);
  });

  it('warns (txt-2) about a narrative without content, without refusing it', () => {
    expect(narrativeDivIssues(div('\n   <p> </p>'), 'Patient.text.div')).toEqual([
      { severity: 'warning', code: 'invariant', diagnostics: 'The narrative has no content: it should hold some non-whitespace text or an image (R4 txt-2)', expression: ['Patient.text.div'] },
    ]);
    expect(narrativeDivIssues(div('<img src="#a"/>'), 'Patient.text.div')).toEqual([]);
  });

  it('checks a div of 300,000 paragraphs without exhausting the stack', () => {
    expect(narrativeDivIssues(div('<p>Anna.</p> '.repeat(300_000)), 'Patient.text.div')).toEqual([]);
  });

  it('checks the narratives of contained resources and Bundle entries at their paths', () => {
    const bad = { status: 'generated', div: div('<script>x</script>') };
    const issues = narrativeIssues({
      resourceType: 'Bundle',
      text: { status: 'generated', div: div('ok') },
      entry: [{ resource: { resourceType: 'Patient' } }, { resource: { resourceType: 'Observation', text: bad, contained: [{ resourceType: 'Patient', text: bad }] } }],
    });
    expect(issues.map((i) => i.expression?.[0]).sort()).toEqual(['Bundle.entry[1].resource.contained[0].text.div', 'Bundle.entry[1].resource.text.div']);
  });
});
