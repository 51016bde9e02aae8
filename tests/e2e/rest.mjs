// The hub's REST calls shared by the harness (readiness check) and the browser tests (tenant
// checks over REST). No dependencies, so the harness can import it before it knows whether
// node_modules is installed.

/** POST /api/auth/login → the token; throws with the status on refusal. */
export async function restLogin(baseUrl, username, password) {
  const res = await fetch(new URL('api/auth/login', baseUrl), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!res.ok) throw new Error(`login ${username}: ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}

/** GET `path` with the bearer token → {status, body} (body parsed as JSON, null when empty). */
export async function restGet(baseUrl, token, path) {
  const res = await fetch(new URL(path.replace(/^\//, ''), baseUrl), { headers: { Authorization: `Bearer ${token}` } });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
