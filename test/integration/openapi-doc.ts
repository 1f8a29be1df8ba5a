/**
 * Reading the API document in tests: find the operation a request meets, and check a value
 * against a schema of the document (JSON Schema 2020-12, as OpenAPI 3.1 uses it).
 */
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'

export interface Parameter {
  in: 'path' | 'query' | 'header'
  name: string
}

export interface Operation {
  operationId?: string
  security?: unknown[]
  parameters?: Parameter[]
  requestBody?: unknown
  responses: Record<string, { content?: Record<string, unknown> }>
}

export type PathItem = Partial<
  Record<'get' | 'put' | 'post' | 'delete' | 'patch' | 'options' | 'head' | 'trace', Operation>
>

export interface OpenApiDocument {
  openapi: string
  security?: unknown[]
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> }
  paths: Record<string, PathItem>
}

/** `~` and `/` escaped for a JSON pointer. */
const pointerEscape = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1')

/**
 * The operation of the document that a request with this method and path meets, and its JSON
 * pointer (`/paths/~1v1~1jobs~1{id}/get`); undefined when the document has none.
 */
export function operationOf(
  doc: OpenApiDocument,
  method: string,
  pathname: string
): { operation: Operation; pointer: string; path: string } | undefined {
  const m = method.toLowerCase() as keyof PathItem
  for (const [path, item] of Object.entries(doc.paths)) {
    const re = new RegExp(`^${path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{\w+\\?\}/g, '[^/]+')}$`)
    const operation = item[m]
    if (operation !== undefined && re.test(pathname)) {
      return { operation, pointer: `/paths/${pointerEscape(path)}/${m}`, path }
    }
  }
  return undefined
}

/**
 * Every object schema that lists its properties, made closed: a value with a field the
 * document does not name fails. The document leaves answers open (a client should accept new
 * fields); the tests hold the server to naming every field it sends.
 */
function closed(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closed)
  if (schema === null || typeof schema !== 'object') return schema
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(schema)) {
    // Under `properties`, keys are field names, not keywords.
    out[k] =
      k === 'properties'
        ? Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([f, s]) => [f, closed(s)]))
        : closed(v)
  }
  if ('properties' in out && !('additionalProperties' in out)) out.additionalProperties = false
  return out
}

/**
 * A checker of values against the document's schemas, by JSON pointer into the document
 * (`/paths/…/get/responses/200/content/application~1json/schema`): null when the value fits,
 * else ajv's errors as one line. Formats (date-time) are checked.
 */
export function schemaValidator(doc: OpenApiDocument): (pointer: string, value: unknown) => string | null {
  const ajv = new Ajv2020({ strict: false, allErrors: true })
  addFormats.default(ajv)
  ajv.addSchema(closed(doc) as object, 'openapi.json')
  const compiled = new Map<string, ValidateFunction>()
  return (pointer, value) => {
    let validate = compiled.get(pointer)
    if (validate === undefined) {
      validate = ajv.compile({ $ref: `openapi.json#${pointer}` })
      compiled.set(pointer, validate)
    }
    return validate(value) ? null : ajv.errorsText(validate.errors)
  }
}
