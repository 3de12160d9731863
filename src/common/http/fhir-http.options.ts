/** What FhirHttpMiddleware needs of the configuration (ConfigModule binds it to the AppConfig). */
export interface FhirHttpOptions {
  readonly fhirBasePath: string;
  /** Largest request body, as body-parser reads it (`1mb`). */
  readonly bodyLimit: string;
}

export const FHIR_HTTP_OPTIONS = Symbol('FHIR_HTTP_OPTIONS');
