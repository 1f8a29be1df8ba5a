export { ApiServer, buildApp, parseHostPort } from './server.ts'
