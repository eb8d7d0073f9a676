// app.js: an app written with the official Dapr JavaScript SDK's
// DaprServer, for test/jssdk_test.go.
//
//	node app.js --protocol http|grpc --port N
//
// --protocol picks the SDK's server: http (an Express app; its sidecar
// runs with --app-protocol http) or grpc (the SDK's AppCallback server; its
// sidecar runs with --app-protocol grpc and turns each invocation into
// OnInvoke). --port is the app's port (default: APP_PORT, as the SDK has
// it). The SDK finds its sidecar on DAPR_HTTP_PORT (http) or
// DAPR_GRPC_PORT (grpc), and DaprServer.start waits for it: GET
// /v1.0/metadata over HTTP, or the Dapr gRPC API's GetMetadata.
//
// Methods, registered with server.invoker.listen for POST:
//
//	echo  answers what the handler was given as JSON: {"protocol", "body"
//	      (as the SDK hands it over: over HTTP the parsed body serialized
//	      again with JSON.stringify, over gRPC the raw bytes as a string),
//	      "query" (HTTP: the request's URL path and query; gRPC:
//	      http_extension.querystring), "contentType", "headers" (HTTP only;
//	      null over gRPC, where the SDK passes none)}
//	fail  throws (gRPC only: the SDK's Express handler does not catch a
//	      rejected promise, which would end the process)
//
// Once DaprServer.start has returned, the app prints the line
// {"ready":true,...} on stdout.
"use strict";

const { DaprServer, CommunicationProtocolEnum, HttpMethod, LogLevel } = require("@dapr/dapr");

function usage(msg) {
	process.stderr.write(`app.js: ${msg}\nusage: node app.js --protocol http|grpc --port N\n`);
	process.exit(2);
}

function parseArgs(argv) {
	const opts = { protocol: "http", port: process.env.APP_PORT };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		if (i + 1 >= argv.length) usage(`${a} needs a value`);
		switch (a) {
			case "--protocol":
				opts.protocol = argv[++i];
				break;
			case "--port":
				opts.port = argv[++i];
				break;
			default:
				usage(`unknown argument ${JSON.stringify(a)}`);
		}
	}
	if (opts.protocol !== "http" && opts.protocol !== "grpc") usage(`unknown protocol ${JSON.stringify(opts.protocol)}`);
	if (!opts.port) usage("--port (or APP_PORT) is required");
	return opts;
}

async function main() {
	const opts = parseArgs(process.argv.slice(2));
	const grpc = opts.protocol === "grpc";
	const server = new DaprServer({
		serverHost: "127.0.0.1",
		serverPort: opts.port,
		communicationProtocol: grpc ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP,
		clientOptions: { daprHost: "127.0.0.1" },
		logger: { level: LogLevel.Info },
	});
	await server.invoker.listen(
		"echo",
		async (data) => ({
			protocol: opts.protocol,
			body: data.body,
			query: data.query === undefined ? null : data.query,
			contentType: data.metadata && data.metadata.contentType !== undefined ? data.metadata.contentType : null,
			headers: data.headers === undefined ? null : data.headers,
		}),
		{ method: HttpMethod.POST },
	);
	if (grpc) {
		await server.invoker.listen(
			"fail",
			async () => {
				throw new Error("the app failed on purpose");
			},
			{ method: HttpMethod.POST },
		);
	}
	await server.start();
	process.stdout.write(JSON.stringify({ ready: true, protocol: opts.protocol, port: opts.port }) + "\n");
}

main().catch((err) => {
	process.stderr.write(`app.js: ${err && err.stack ? err.stack : err}\n`);
	process.exit(1);
});
