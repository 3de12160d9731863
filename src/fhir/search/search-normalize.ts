/** Case- and accent-insensitive form of a string for search: `Müller` -> `muller`. */
export function normalizeString(s: string): string {
  return s.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase();
}
