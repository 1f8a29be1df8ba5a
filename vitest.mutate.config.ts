import { defineConfig } from 'vitest/config'

// The fast unit tests of the pure core and the scheduler, for Stryker (`npm run mutate`). A flat
// config, no projects: Stryker's vitest runner drives one project and reruns it per mutant, so
// it must hold no daemons, simulator sweeps or end-to-end tests.
export default defineConfig({
  test: {
    include: ['test/unit/core/**/*.test.ts', 'test/unit/scheduler/**/*.test.ts'],
    testTimeout: 60_000,
    pool: 'forks'
  }
})
