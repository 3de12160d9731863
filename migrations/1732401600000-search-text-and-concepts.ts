import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Full-text search (`_text`, `_content`) and code-system hierarchies (token `:above` / `:below`).
 *
 * - `search_text`: one row per current resource, written with its other index rows: `narrative`
 *   is `Resource.text.div` (the text-search parser drops the XHTML tags and entities; NULL when
 *   there is none), `content` every string and number except `id`, `meta` and long base64 values (SearchIndexWriter's
 *   `contentText`; the backfill below applies the same rule in SQL). GIN indexes serve `@@`.
 *   Both texts are cut at 256 KiB: a tsvector holds at most 1 MB, and a larger one would fail the write.
 * - `search_concept`: one row per (concept, parent) of a stored CodeSystem, from `concept`
 *   nesting and the `parent` / `subsumedBy` / `child` concept properties; roots have parent NULL,
 *   so every concept has a row. A recursive CTE walks it for `:below` (children) or `:above`.
 *
 * Existing resources are backfilled here with the default text-search configuration `simple`;
 * a deployment that sets SEARCH_TEXT_LANGUAGE to another one runs `npm run reindex` once.
 */
export class SearchTextAndConcepts1732401600000 implements MigrationInterface {
  name = 'SearchTextAndConcepts1732401600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE search_text (
        resource_type text NOT NULL, id text NOT NULL, narrative tsvector, content tsvector NOT NULL
      )`);
    await q.query(`CREATE INDEX search_text_resource_idx ON search_text (resource_type, id)`);
    await q.query(`CREATE INDEX search_text_narrative_idx ON search_text USING gin (narrative)`);
    await q.query(`CREATE INDEX search_text_content_idx ON search_text USING gin (content)`);
    // contentText's rule: base64 data (attachments) are no words anyone searches and would only grow the index.
    await q.query(`
      CREATE FUNCTION pg_temp.search_content_text(content jsonb) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT left(string_agg(v #>> '{}', ' '), 262144)
          FROM jsonb_path_query(content - 'id' - 'meta', 'strict $.** ? ((@.type() == "string" && !(@ like_regex "^[A-Za-z0-9+/]{100,}={0,2}$")) || @.type() == "number")') v
      $$`);
    await q.query(`
      INSERT INTO search_text (resource_type, id, narrative, content)
      SELECT resource_type, id, to_tsvector('simple', left(content->'text'->>'div', 262144)), to_tsvector('simple', COALESCE(pg_temp.search_content_text(content), ''))
        FROM resource WHERE NOT deleted`);

    await q.query(`
      CREATE TABLE search_concept (
        resource_type text NOT NULL, id text NOT NULL, system text NOT NULL, code text NOT NULL, parent text
      )`);
    await q.query(`CREATE INDEX search_concept_code_idx ON search_concept (resource_type, id, code) INCLUDE (parent)`);
    await q.query(`CREATE INDEX search_concept_parent_idx ON search_concept (resource_type, id, parent) INCLUDE (code)`);
    // The same rows SearchIndexWriter derives (conceptRows), for the CodeSystems stored before this migration.
    await q.query(`
      WITH RECURSIVE walk (id, system, concept, parent) AS (
        SELECT r.id, r.content->>'url', c.value, NULL::text
          FROM resource r, jsonb_array_elements(CASE WHEN jsonb_typeof(r.content->'concept') = 'array' THEN r.content->'concept' ELSE '[]' END) c
         WHERE r.resource_type = 'CodeSystem' AND NOT r.deleted AND r.content->>'url' IS NOT NULL
        UNION ALL
        SELECT w.id, w.system, c.value, w.concept->>'code'
          FROM walk w, jsonb_array_elements(CASE WHEN jsonb_typeof(w.concept->'concept') = 'array' THEN w.concept->'concept' ELSE '[]' END) c
         WHERE w.concept->>'code' IS NOT NULL
      ),
      property AS (
        SELECT w.id, w.system, w.concept->>'code' AS code, p.value->>'code' AS kind, COALESCE(p.value->>'valueCode', p.value->'valueCoding'->>'code') AS other
          FROM walk w, jsonb_array_elements(CASE WHEN jsonb_typeof(w.concept->'property') = 'array' THEN w.concept->'property' ELSE '[]' END) p
         WHERE w.concept->>'code' IS NOT NULL
      )
      INSERT INTO search_concept (resource_type, id, system, code, parent)
      SELECT DISTINCT 'CodeSystem', id, system, code, parent FROM (
        SELECT id, system, concept->>'code' AS code, parent FROM walk WHERE concept->>'code' IS NOT NULL
        UNION ALL
        SELECT id, system, code, other FROM property WHERE kind IN ('parent', 'subsumedBy') AND other IS NOT NULL
        UNION ALL
        SELECT id, system, other, code FROM property WHERE kind = 'child' AND other IS NOT NULL
      ) e`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE search_concept`);
    await q.query(`DROP TABLE search_text`);
  }
}
