/**
 * Shared R4 search parameters unite several types' paths (`Patient.name | Person.name`, or the 32
 * branches of `patient`); for one type only its own branches matter, and evaluating the others
 * on every write is wasted work. `A.x | B.y | A.z` for A is `A.x | A.z`; an expression that names
 * no branch of the type (`name`, `%resource.x`) is kept whole.
 */
export function branchesForType(expression: string, resourceType: string): string {
  const branches = splitTopLevelUnion(expression);
  if (branches.length < 2) return expression;
  const own = branches.filter((b) => new RegExp(`^\\(?${resourceType}[.\\s)]`).test(b) || b === resourceType);
  return own.length ? own.join(' | ') : expression;
}

/** The operands of top-level `|` unions (not those inside parentheses), trimmed. */
function splitTopLevelUnion(expression: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) {
      parts.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expression.slice(start).trim());
  return parts;
}
