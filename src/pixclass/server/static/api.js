// Thin fetch wrapper: JSON in and out, the CSRF header on every request, errors as exceptions with the reason.
export class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

export async function api(path, { method = "GET", body, form } = {}) {
  const opts = { method, headers: { "X-Requested-With": "pixclass" }, credentials: "same-origin" };
  if (form !== undefined) opts.body = form; // multipart (FormData): the browser sets the boundary header
  else if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) throw new ApiError(res.status, reason(data && data.detail, data));
  return data;
}

// FastAPI's 422 detail is a list of {loc, msg}: "password: String should have at least 4 characters".
function reason(detail, data) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => {
      const where = (d.loc || []).filter((p) => p !== "body" && p !== "query").join(".");
      return where ? `${where}: ${d.msg}` : d.msg;
    }).join("; ");
  }
  return JSON.stringify(detail || data);
}

export const qs = (obj) => new URLSearchParams(
  Object.entries(obj).filter(([, v]) => v !== "" && v !== null && v !== undefined && v !== false)
).toString();
