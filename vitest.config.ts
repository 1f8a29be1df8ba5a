import { defineConfig } from 'vitest/config'

const shared = {
  testTimeout: 60_000,
  hookTimeout: 60_000,
  pool: 'forks' as const
}

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          ...shared,
          name: 'suite',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.alone.test.ts', 'test/red/**'],
          fileParallelism: true,
          maxWorkers: 2,
          sequence: { groupOrder: 0 }
        }
      },
      {
        // Tests that load the whole machine on purpose (twelve daemons and CPU-bound tasks on two
        // cores) and measure failover under it: `npm run test:load`, apart from `npm test`, one at
        // a time, so no other test file adds an unmeasured load to theirs.
        test: {
          ...shared,
          name: 'alone',
          include: ['test/**/*.alone.test.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 1 }
        }
      }
    ]
  }
})
