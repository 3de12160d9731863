/** What FhirHttpMiddleware needs of the configuration (ConfigModule binds it to the AppConfig). */
export interface FhirHttpOptions {
  readonly fhirBasePath: string;
  /** Largest request body, as body-parser reads it (`1mb`). */
  readonly bodyLimit: string;
  /** Largest Binary sent in its native format (`10mb`). */
  readonly binaryLimit: string;
}

export const FHIR_HTTP_OPTIONS = Symbol('FHIR_HTTP_OPTIONS');
