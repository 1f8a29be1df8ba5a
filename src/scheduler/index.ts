export { Scheduler, type SchedulerComponents, type SchedulerInit, type SchedulerMesh } from './scheduler.ts'
