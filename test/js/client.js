// client.js: invokes apps through a sidecar with the official Dapr
// JavaScript SDK's DaprClient (client.invoker.invoke), for
// test/jssdk_test.go, and prints what came back as one JSON document on
// stdout.
//
//	node client.js --protocol http|grpc [--port N] --app-id ID CALL...
//
// --protocol picks the SDK's transport: http (the HTTP API on
// DAPR_HTTP_PORT) or grpc (the Dapr gRPC API's InvokeService on
// DAPR_GRPC_PORT). --port overrides the port the SDK reads from those
// variables. Each CALL is a JSON object:
//
//	{"method": "orders/42?x=1", "verb": "post", "data": {"a": 1},
//	 "headers": {"X-Echo-Status": "404"}, "app": "other-app"}
//
// verb defaults to get, app to --app-id; headers reach the wire over HTTP
// only (the SDK's gRPC invoker ignores them). The output is
//
//	{"sdkVersion": "3.18.0", "protocol": "http", "results": [R...]}
//
// with one R per CALL, in order: {"ok": true, "answer": <what invoke
// returned>} or {"ok": false, "error": E}. Over HTTP, E is the SDK's error
// message as JSON ({"error": <status text>, "error_msg": <body>, "status":
// <code>}); over gRPC it is the ConnectError: {"name", "code" (the gRPC code
// as a number), "rawMessage", "detailTypes"}. The exit code is 0 when every
// call was made, whatever it answered; 2 on bad arguments, 1 otherwise.
"use strict";

const { DaprClient, CommunicationProtocolEnum, LogLevel } = require("@dapr/dapr");
const { SDK_VERSION } = require("@dapr/dapr/version");

function usage(msg) {
	process.stderr.write(`client.js: ${msg}\nusage: node client.js --protocol http|grpc [--port N] --app-id ID CALL...\n`);
	process.exit(2);
}

function parseArgs(argv) {
	const opts = { protocol: "http", port: undefined, appId: undefined, calls: [] };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const value = () => {
			if (i + 1 >= argv.length) usage(`${a} needs a value`);
			return argv[++i];
		};
		switch (a) {
			case "--protocol":
				opts.protocol = value();
				break;
			case "--port":
				opts.port = value();
				break;
			case "--app-id":
				opts.appId = value();
				break;
			default:
				try {
					opts.calls.push(JSON.parse(a));
				} catch (e) {
					usage(`call ${JSON.stringify(a)} is not JSON: ${e.message}`);
				}
		}
	}
	if (opts.protocol !== "http" && opts.protocol !== "grpc") usage(`unknown protocol ${JSON.stringify(opts.protocol)}`);
	if (!opts.appId && opts.calls.some((c) => !c.app)) usage("--app-id is required");
	return opts;
}

// describe turns what the SDK threw into plain JSON.
function describe(err) {
	if (err && err.name === "ConnectError") {
		return {
			name: err.name,
			code: err.code,
			rawMessage: err.rawMessage,
			detailTypes: (err.details || []).map((d) => d.type || (d.desc && d.desc.typeName) || ""),
		};
	}
	const msg = err && err.message !== undefined ? err.message : String(err);
	try {
		return JSON.parse(msg);
	} catch {
		return { name: err && err.name, message: msg };
	}
}

async function main() {
	const opts = parseArgs(process.argv.slice(2));
	const client = new DaprClient({
		daprHost: "127.0.0.1",
		daprPort: opts.port,
		communicationProtocol: opts.protocol === "grpc" ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP,
		// The SDK logs on stdout from Info up; stdout carries our JSON.
		logger: { level: LogLevel.Warn },
	});
	const results = [];
	for (const c of opts.calls) {
		try {
			const answer = await client.invoker.invoke(c.app || opts.appId, c.method, c.verb || "get", c.data, {
				headers: c.headers,
			});
			results.push({ ok: true, answer: answer === undefined ? null : answer });
		} catch (err) {
			results.push({ ok: false, error: describe(err) });
		}
	}
	await client.stop();
	process.stdout.write(JSON.stringify({ sdkVersion: SDK_VERSION, protocol: opts.protocol, results }) + "\n");
}

main().catch((err) => {
	process.stderr.write(`client.js: ${err && err.stack ? err.stack : err}\n`);
	process.exit(1);
});
