// client.mjs - a connect-es client (@connectrpc/connect-node v2) for chcp's
// end-to-end tests. It loads the API schema from a `buf build` image (no
// generated code), calls VmService methods as the test asks, and prints one
// JSON array with each call's outcome: {ok, response} or {ok:false, code,
// message}. Usage: node client.mjs '<spec json>' where spec is
//   {image, baseUrl, protocol: connect|grpc|grpcweb, httpVersion: "1.1"|"2",
//    binary: bool, unixSocket?: path, timeoutMs?: n,
//    calls: [{method: "GetVmInfo", request: {...proto JSON...}}]}
import { readFileSync } from "node:fs";
import * as net from "node:net";
import { createFileRegistry, fromBinary, fromJson, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";

const spec = JSON.parse(process.argv[2]);
const registry = createFileRegistry(
  fromBinary(FileDescriptorSetSchema, readFileSync(spec.image)),
);
const service = registry.getService("cloudhypervisor.v1.VmService");
if (!service) throw new Error("VmService not in schema image");

function nodeOptions() {
  if (!spec.unixSocket) return undefined;
  if (spec.httpVersion === "2" || spec.protocol === "grpc")
    return { createConnection: () => net.connect(spec.unixSocket) };
  return { socketPath: spec.unixSocket };
}

function makeTransport() {
  const common = { baseUrl: spec.baseUrl, nodeOptions: nodeOptions() };
  switch (spec.protocol) {
    case "connect":
      return createConnectTransport({
        ...common,
        httpVersion: spec.httpVersion,
        useBinaryFormat: spec.binary,
      });
    case "grpcweb":
      return createGrpcWebTransport({
        ...common,
        httpVersion: spec.httpVersion,
        useBinaryFormat: spec.binary,
      });
    case "grpc":
      return createGrpcTransport({ ...common });
    default:
      throw new Error("unknown protocol " + spec.protocol);
  }
}

// Code.InvalidArgument -> "invalid_argument", as Connect spells codes.
function codeName(code) {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

const client = createClient(service, makeTransport());
const results = [];
for (const call of spec.calls) {
  const method = service.methods.find((m) => m.name === call.method);
  if (!method) throw new Error("no method " + call.method);
  try {
    const request = fromJson(method.input, call.request ?? {}, { registry });
    const response = await client[method.localName](request, {
      timeoutMs: spec.timeoutMs ?? 10000,
    });
    results.push({ ok: true, response: toJson(method.output, response, { registry }) });
  } catch (e) {
    const err = ConnectError.from(e);
    results.push({ ok: false, code: codeName(err.code), message: err.rawMessage });
  }
}
process.stdout.write(JSON.stringify(results) + "\n");
