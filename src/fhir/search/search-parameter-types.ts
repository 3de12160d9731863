// The vocabulary of indexed search parameters, below the registry and the composite helpers that both use it.

export type IndexedParamType = 'token' | 'string' | 'date' | 'number' | 'quantity' | 'reference' | 'uri' | 'composite';

/** One component of a composite parameter: its type and FHIRPath, relative to each value of the composite's expression. */
export interface CompositeComponentDef {
  type: Exclude<IndexedParamType, 'composite'>;
  expression: string;
}
