// The console's only way to the server: the JSON API under /api/v1/ on
// this same origin. The session travels in the HttpOnly cookie the sign-in
// set (scripts never see the token); the browser adds Origin to every
// POST, which the server checks against Host.

/** A refused or failed request: HTTP status (0: no answer), the API's
 * error code and message, and for 403 the roles involved. */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    super(body?.message ?? fallback);
    this.status = status;
    this.code = body?.error ?? (status === 0 ? 'network' : 'http');
    this.role = body?.role ?? null;
    this.requiredRole = body?.required_role ?? null;
  }
}

/** Calls the API; resolves to the decoded JSON, rejects with ApiError. */
export async function call(method, path, body, signal) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' }, signal };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, null, error.message);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data, `HTTP ${response.status}`);
  return data;
}

export const get = (path, signal) => call('GET', path, undefined, signal);
export const post = (path, body, signal) => call('POST', path, body ?? {}, signal);

/** A device id as one path segment (`1312345678/cpe-01` → `1312345678%2Fcpe-01`). */
export const segment = (id) => encodeURIComponent(id);

/** `/api/v1/devices?…` from the non-empty entries of `params`. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== '' && value !== null && value !== undefined && value !== false) query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}
