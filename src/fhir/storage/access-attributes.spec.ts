import { AccessAttributesContext, accessAttributesOf } from './access-attributes';

/** A database that fails the test if asked anything: a refused lookup must not reach it. */
const untouchable = {
  query: (): Promise<never> => {
    throw new Error('the database was queried');
  },
};
const refs = [{ resourceType: 'Patient', id: 'p1' }];

describe('accessAttributesOf (issue 22 item 8)', () => {
  it("refuses a client's context before touching the database", async () => {
    const clientContext = { principal: { kind: 'client', clientId: 'c1', organization: 'org-a', role: 'hospital', scopes: ['system/*.rs'] }, system: undefined };
    await expect(accessAttributesOf(clientContext as never, untouchable, refs)).rejects.toThrow(
      'accessAttributesOf reads any row: only a named internal context (AccessAttributesContext) may ask',
    );
  });

  it('refuses a system context that is not one of the named static ones, and a forged look-alike', async () => {
    const minted = { principal: { kind: 'system', clientId: 'system:reindex', scopes: [] }, system: 'reindex' };
    await expect(accessAttributesOf(minted as never, untouchable, refs)).rejects.toThrow('only a named internal context');
    const forged = { name: 'consent-explanation' };
    await expect(accessAttributesOf(forged as never, untouchable, refs)).rejects.toThrow('only a named internal context');
    await expect(accessAttributesOf(undefined as never, untouchable, refs)).rejects.toThrow('only a named internal context');
  });

  it('accepts each named static context (an empty lookup asks the database nothing)', async () => {
    for (const context of [AccessAttributesContext.CONSENT_MATERIALIZATION, AccessAttributesContext.CONSENT_EXPLANATION]) {
      await expect(accessAttributesOf(context, untouchable, [])).resolves.toEqual([]);
    }
    expect([AccessAttributesContext.CONSENT_MATERIALIZATION.name, AccessAttributesContext.CONSENT_EXPLANATION.name]).toEqual(['consent-materialization', 'consent-explanation']);
  });
});
