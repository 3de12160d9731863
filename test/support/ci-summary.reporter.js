// Prints the one line CI reads: `tests: N passed, M failed, K skipped`. A suite that fails to load
// counts as a failure; skipped counts it.skip/describe.skip and it.todo (each skip says why in its name).
class CiSummaryReporter {
  onRunComplete(_contexts, results) {
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    const skipped = results.numPendingTests + results.numTodoTests;
    process.stdout.write(`\ntests: ${results.numPassedTests} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
module.exports = CiSummaryReporter;
