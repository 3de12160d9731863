import { demographicsOf } from './demographics';
import { identityPopulation } from './identity-population';
import { loadIdentityConfig } from './identity-config';
import { scoreMatch } from './match-scorer';

const CONFIG = loadIdentityConfig();

/**
 * The scorer on a labelled generated population (fixed seed): every pair of records at different
 * organizations is scored (the SQL blocking is exercised by identity-evaluation.e2e-spec.ts), and
 * precision and recall of automatic links (grade certain) and the review band's catch are reported.
 */
describe('identity population: scorer precision and recall', () => {
  const population = identityPopulation({ seed: 27, persons: 150, twinPairs: 50, parentChildPairs: 50, orgs: 3 });
  const d = population.map((r) => ({ ...r, demo: demographicsOf(r.patient) }));

  it('is deterministic for a seed', () => {
    expect(identityPopulation({ seed: 27, persons: 5, twinPairs: 1, parentChildPairs: 1, orgs: 3 })).toEqual(
      identityPopulation({ seed: 27, persons: 5, twinPairs: 1, parentChildPairs: 1, orgs: 3 }),
    );
    expect(population).toHaveLength(150 * 3 + 50 * 4 + 50 * 4);
  });

  it('automatic links: precision >= 0.99 and recall >= 0.90; the review band catches most of the rest', () => {
    let tp = 0;
    let fp = 0;
    let truePairs = 0;
    let missedInReview = 0;
    let falseInReview = 0;
    const fpKinds: string[] = [];
    for (let i = 0; i < d.length; i++) {
      for (let j = i + 1; j < d.length; j++) {
        if (d[i].org === d[j].org) continue;
        const same = d[i].person === d[j].person;
        const s = scoreMatch(d[i].demo, d[j].demo, CONFIG);
        if (same) truePairs++;
        if (s.grade === 'certain') {
          if (same) tp++;
          else {
            fp++;
            fpKinds.push(`${d[i].person}~${d[j].person}`);
          }
        } else if (s.grade === 'probable') {
          if (same) missedInReview++;
          else falseInReview++;
        }
      }
    }
    const precision = tp / (tp + fp);
    const recall = tp / truePairs;
    const reviewCatch = (truePairs - tp) === 0 ? 1 : missedInReview / (truePairs - tp);
    // Reported in the test output (and docs/identity.md).
    process.stdout.write(`${JSON.stringify({ records: d.length, truePairs, tp, fp, precision: +precision.toFixed(4), recall: +recall.toFixed(4), missed: truePairs - tp, missedInReview, reviewCatch: +reviewCatch.toFixed(3), falseInReview, fpKinds: fpKinds.slice(0, 10) })}\n`);
    expect(precision).toBeGreaterThanOrEqual(0.99);
    expect(recall).toBeGreaterThanOrEqual(0.9);
    expect(reviewCatch).toBeGreaterThanOrEqual(0.5);
  });
});
