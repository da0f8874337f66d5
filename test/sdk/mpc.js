// Drives mpcfs serve's MPC API through Huawei Cloud's own Node.js SDK core
// (the AK/SK signer and HTTP client that every Huawei Cloud Node SDK uses),
// so the server is tested against a signer nobody here wrote.
//
// Input (stdin): {"endpoint": "http://127.0.0.1:PORT", "ak": ..., "sk": ...,
//   "project_id": ..., "ops": [op...]}, each op one of
//   {"op": "create", "body": {...}}            POST /v1/{project_id}/encryptions
//   {"op": "query", "query": {"task_id": ...}} GET  (query parameters as given)
//   {"op": "cancel", "task_id": "..."}         DELETE ?task_id=
//   and optionally "sk" / "ak" / "project_id" overriding the credential, and
//   "headers" added to the request before signing (e.g. an old X-Sdk-Date,
//   which the SDK then signs with), and "content_type" (other than
//   application/json, the SDK signs with X-Sdk-Content-Sha256:
//   UNSIGNED-PAYLOAD instead of the body's hash).
// Output (stdout): a JSON array, one {"status", "body", "request_id"} per op.
'use strict';
const { BasicCredentials } = require('@huaweicloud/huaweicloud-sdk-core');
// The package's index does not export ClientBuilder (service SDKs import
// it by path, as here).
const { ClientBuilder } = require('@huaweicloud/huaweicloud-sdk-core/ClientBuilder');

function client(endpoint, ak, sk, projectId) {
  const cred = new BasicCredentials().withAk(ak).withSk(sk).withProjectId(projectId);
  return new ClientBuilder((hc) => hc).withEndpoint(endpoint).withCredential(cred).build();
}

async function run(plan, op) {
  const c = client(plan.endpoint, op.ak || plan.ak, op.sk || plan.sk, op.project_id || plan.project_id);
  const req = {
    url: '/v1/{project_id}/encryptions',
    pathParams: {},
    queryParams: {},
    contentType: 'application/json',
    headers: Object.assign({}, op.headers || {}),
  };
  if (op.content_type) req.contentType = op.content_type;
  switch (op.op) {
    case 'create':
      Object.assign(req, { method: 'POST', data: op.body });
      break;
    case 'query':
      Object.assign(req, { method: 'GET', queryParams: op.query || {} });
      break;
    case 'cancel':
      Object.assign(req, { method: 'DELETE', queryParams: { task_id: op.task_id } });
      break;
    default:
      throw new Error('unknown op ' + op.op);
  }
  try {
    const res = await c.sendRequest(req);
    const status = res.httpStatusCode;
    delete res.httpStatusCode;
    return { status, body: res };
  } catch (e) {
    if (e && e.httpStatusCode) {
      return { status: e.httpStatusCode, body: { error_code: e.errorCode, error_msg: e.errorMsg }, request_id: e.requestId };
    }
    return { status: 0, error: String(e && (e.stack || e)) };
  }
}

async function main() {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const plan = JSON.parse(input);
  const out = [];
  for (const op of plan.ops) out.push(await run(plan, op));
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e && (e.stack || e)) + '\n');
  process.exit(1);
});
