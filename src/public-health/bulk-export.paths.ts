/** The outbox queue of export jobs, and the one that deletes an export's files when they expire. */
export const BULK_EXPORT_QUEUE = 'public-health.bulk-export';
export const BULK_EXPORT_EXPIRY_QUEUE = 'public-health.bulk-export-expiry';

/** Status and files live outside the FHIR base (they are not FHIR resources): `/bulk-export/{id}`. */
export const BULK_EXPORT_ROUTE = 'bulk-export';

export function bulkExportStatusUrl(publicBaseUrl: string, id: string): string {
  return `${publicBaseUrl}/${BULK_EXPORT_ROUTE}/${id}`;
}

export function bulkExportFileUrl(publicBaseUrl: string, id: string, file: string): string {
  return `${publicBaseUrl}/${BULK_EXPORT_ROUTE}/${id}/${file}`;
}
