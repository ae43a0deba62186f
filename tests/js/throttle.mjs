// The AWS SDK for JavaScript v3 as a real fisproxy client: PutItem then GetItem on one table,
// through HTTPS_PROXY (hpagent) with the fisproxy CA from NODE_EXTRA_CA_CERTS.
// Usage: node throttle.mjs TABLE [REGION]. Prints one JSON object on stdout:
//   {"put": Outcome, "get": Outcome}, Outcome = {ok, name, code, fault, metadata, item, wire}
// where `wire` lists every HTTP exchange the SDK really made (one per attempt), so the test can
// compare the SDK's own `$metadata.attempts` with what went over the wire.
import { DynamoDBClient, GetItemCommand, PutItemCommand } from "@aws-sdk/client-dynamodb";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { HttpsProxyAgent } from "hpagent";

const [table, region = "us-east-1"] = process.argv.slice(2);
const proxy = process.env.HTTPS_PROXY || process.env.https_proxy;
if (!table || !proxy) {
  console.error("usage: HTTPS_PROXY=http://127.0.0.1:8080 node throttle.mjs TABLE [REGION]");
  process.exit(2);
}

// Records each attempt: the SDK's own attempt header and the answer's status and fault header.
class RecordingHandler extends NodeHttpHandler {
  wire = [];

  async handle(request, options) {
    const entry = { operation: request.headers["x-amz-target"], sdkRequest: request.headers["amz-sdk-request"] };
    this.wire.push(entry);
    const result = await super.handle(request, options);
    entry.status = result.response.statusCode;
    entry.fault = result.response.headers["x-fisproxy-fault"] ?? null;
    return result;
  }
}

// The v3 SDK ignores HTTPS_PROXY: the proxy goes in through the request handler's agent.
const requestHandler = new RecordingHandler({
  httpsAgent: new HttpsProxyAgent({ proxy, keepAlive: true }),
  connectionTimeout: 5_000,
  requestTimeout: 20_000,
});
// No maxAttempts / retryMode: the SDK's defaults for DynamoDB are what the test checks.
const client = new DynamoDBClient({ region, requestHandler });

async function call(command) {
  const start = requestHandler.wire.length;
  const wire = () => requestHandler.wire.slice(start);
  try {
    const out = await client.send(command);
    return { ok: true, metadata: out.$metadata, item: out.Item ?? null, wire: wire() };
  } catch (err) {
    return {
      ok: false,
      name: err.name,
      code: err.Code ?? err.code ?? null,
      fault: err.$fault ?? null,
      message: err.message,
      metadata: err.$metadata ?? null,
      wire: wire(),
    };
  }
}

const put = await call(new PutItemCommand({ TableName: table, Item: { pk: { S: "js" }, v: { S: "2" } } }));
const get = await call(new GetItemCommand({ TableName: table, Key: { pk: { S: "seeded" } } }));
client.destroy();
process.stdout.write(JSON.stringify({ put, get }) + "\n");
