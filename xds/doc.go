// Package xds makes a sidecar an xDS client: it takes routes, endpoints,
// resiliency and access policy from a control plane, the way Envoy and
// proxyless gRPC do, so that any go-control-plane server can drive Skein.
//
// Client speaks ADS over gRPC, state of the world
// (StreamAggregatedResources, the default) or incremental
// (DeltaAggregatedResources). It subscribes to every Listener and Cluster,
// then to the RouteConfigurations and ClusterLoadAssignments they name. Each
// response is translated (pure functions in translate.go), merged with the
// other types into a proxy.XDSConfig and applied with
// proxy.Sidecar.ApplyXDS, which compiles it into the same snapshot as the
// YAML files; the endpoints go to Endpoints, the discovery.Source the
// sidecar resolves with, which tells the resolver (discovery.Notifier) which
// apps' instances changed so calls follow an EDS update at once, not at the
// resolver's next poll. A response is ACKed only once the sidecar accepted
// it. Otherwise it is NACKed with error_detail naming the resource and the
// field (`Cluster "orders" (resources[0]): outlier_detection.base_ejection_time:
// invalid duration ...`) and the last good config keeps serving; a bad
// resource rejects the whole response. When the stream breaks the sidecar
// keeps its config, reconnects with exponential back-off (100 ms doubling
// to 30 s, ±20% jitter; reset once a stream delivers) and resubscribes
// with the versions it holds (state of the world: version_info; incremental:
// initial_resource_versions).
//
// The node is id "<app-id>.<namespace>", cluster "<app-id>", metadata
// {"spiffe_id", "app_id", "namespace"}. The status of every type (version,
// ACKED/NACKED, error) is on /v1.0/metadata under "xds" and in the metrics
// skein_xds_connected, skein_xds_updates_total{type,result},
// skein_xds_resource_version_info{type,version}, skein_xds_resources{type}
// and skein_xds_stream_restarts_total (type: lds, rds, cds, eds).
//
// # Naming
//
// An HTTPEndpoint (external service invocation) is a Cluster and a
// Listener named "httpendpoint|<name>.<namespace>" (EndpointName,
// httpendpoint.go; docs/xds.md has the mapping): where calls go, and what
// they carry. The sidecar keeps those of its own namespace; per name they
// replace an HTTPEndpoint file's.
//
// An app is a Cluster of the same name: "<app-id>" in the default
// namespace, "<app-id>.<namespace>" elsewhere. Its ClusterLoadAssignment
// (same name) lists the peer-facing addresses of its instances
// (--dapr-internal-grpc-port). The Listener of that name carries, through
// its HttpConnectionManager, the routes callers of the app use and the RBAC
// filter the app's own sidecars enforce on inbound calls.
//
// # Precedence
//
// xDS is one more config source beside the YAML files. Per target app xDS
// wins: a call whose method matches one of the app's routes takes the
// route's timeout and retry policy instead of the Resiliency resources'
// (the files' circuit breaker stays: xDS has none); other calls keep the
// files' policy. The cluster's retry budget, concurrency cap, balancer and
// outlier detection apply to every call to the app. Access control is
// cumulative: a call must pass the Configuration's accessControl and then
// the RBAC filter. An app with a Cluster is resolved through EDS only; any
// other app falls back to the embedded registry, so sidecars with separate
// $SKEIN_HOMEs find each other only through the control plane.
//
// # Supported resources and fields
//
// Fields not listed are ignored unless the Notes say they are refused
// (NACK). Durations must be valid and not negative.
//
//	Resource / field                                   Skein meaning                                  Notes
//	-------------------------------------------------  ---------------------------------------------  ------------------------------------------------
//	Cluster name                                       the app: <app-id>[.<namespace>]                anything else NACKed
//	Cluster type, eds_cluster_config.eds_config        EDS over ADS (ads or self)                     other types NACKed; service_name empty or = name
//	Cluster lb_policy                                  ROUND_ROBIN (proto default): round robin;      others and load_balancing_policy NACKed
//	                                                   LEAST_REQUEST: P2C over peak-EWMA
//	Cluster outlier_detection.consecutive_5xx          failures in a row that eject (default 5)      absent outlier_detection: the sidecar's
//	  .base_ejection_time / .max_ejection_time         first / longest ejection (30 s / 300 s)       --outlier-* flags; 0 turns ejection off
//	Cluster circuit_breakers.thresholds[DEFAULT]       max_requests: calls in flight from this        excess calls fail at once: 503 CIRCUIT_OPEN;
//	  .max_requests                                    sidecar to the app, whole call incl. retries  unset: no cap (not Envoy's 1024)
//	  .retry_budget.budget_percent                     retries per request (default 20%)             within 0-100
//	  .retry_budget.min_retry_concurrency              retries per second always allowed (default 3)
//	ClusterLoadAssignment cluster_name                 the app                                        required
//	  endpoints[].locality {region,zone,sub_zone}       discovery.Instance.Locality                    priority > 0 and LEDS NACKed
//	  .lb_endpoints[].endpoint.address.socket_address  the instance's peer address (TCP, port_value)  named ports, pipes NACKed
//	  .lb_endpoints[].load_balancing_weight            discovery.Instance.Weight (default 1)          0 NACKed; shares load in proportion (both balancers)
//	  .lb_endpoints[].health_status                    UNHEALTHY, DRAINING, TIMEOUT left out
//	  .lb_endpoints[].metadata.filter_metadata.skein   {"instance_id": "..."}: the instance's name
//	Listener name                                      the app whose routes and RBAC it carries       address/filter_chains (non-api) NACKed
//	Listener api_listener.api_listener                 HttpConnectionManager                          other types NACKed
//	  .rds {config_source: ads, route_config_name}     where the routes are                           scoped_routes NACKed
//	  .route_config                                    inline routes, as RouteConfiguration
//	  .http_filters                                    envoy.filters.http.rbac (at most one), then    unknown filters NACKed unless is_optional;
//	                                                   envoy.filters.http.router (last, required)     disabled filters skipped
//	RBAC (filters.http.rbac.v3) rules                  access policy of the Listener's app (callee)   no rules: no policy; shadow_rules, matcher NACKed
//	  rules.action                                     ALLOW or DENY                                  LOG NACKed
//	  rules.policies{name}                             tried in name order                            condition / checked_condition NACKed
//	  .principals[]: any, authenticated.principal_name caller's SPIFFE ID, StringMatcher exact or     other principals NACKed; a caller without
//	                 or_ids, and_ids                   prefix (ignore_case)                           a verified ID matches only any
//	  .permissions[]: any, url_path.path,               "/" + the normalised method; :method verb     other permissions, other headers, invert_match,
//	                  header ":method" exact,                                                          regex/suffix/contains matchers NACKed
//	                  or_rules, and_rules
//	RouteConfiguration virtual_hosts[0].routes[]       tried in order against "/<method>"             more than one virtual host NACKed
//	  .match.prefix / .match.path, .case_sensitive     prefix or exact match (case-insensitive when   safe_regex, headers, query_parameters, ...
//	                                                   case_sensitive is false)                       NACKed
//	  .route.cluster                                   the app the routes configure                   required; weighted_clusters, cluster_header
//	                                                                                                  NACKed; all routes of one RouteConfiguration
//	                                                                                                  must name the same cluster
//	  .route.timeout                                   deadline of the whole call, retries included   unset or 0: none (not Envoy's 15 s)
//	  .route.retry_policy (or the virtual host's)      retries, exponential back-off (±50% jitter)
//	    .retry_on                                      5xx, gateway-error, retriable-status-codes:    other conditions NACKed; empty: no retries;
//	                                                   statuses; connect-failure, reset,              transport errors are always retried
//	                                                   refused-stream: transport errors only
//	    .num_retries                                   retries after the first try (default 1)
//	    .per_try_timeout                               deadline of each try
//	    .retry_back_off {base_interval, max_interval}  first and longest back-off (25 ms, 10x base)
//	    .retriable_status_codes                        with retriable-status-codes
//	Cluster httpendpoint|<name>.<ns> type              LOGICAL_DNS or STRICT_DNS: dialled by name      others NACKed
//	  .load_assignment (one socket_address)            the base URL's host and port                   more or fewer addresses NACKed
//	  .transport_socket UpstreamTlsContext             https; sni = the host; validation_context      no validation context, SDS, filename,
//	                                                   trusted_ca (rootCA) or system_root_certs;      SAN/SPKI/hash matchers NACKed
//	                                                   tls_certificates[0] (client certificate)
//	Listener httpendpoint|<name>.<ns> inline route     prefix "/" to the cluster of the same name,    rds, timeout, retry_policy, other matches,
//	                                                   auto_host_rewrite; prefix_rewrite: base path   appending headers NACKed
//	  .request_headers_to_add                          headers: "%%" is "%", a whole                  other format commands NACKed; a missing
//	                                                   "%ENVIRONMENT(NAME)%" the sidecar's variable   variable NACKed
//
// Usage (cmd/skein wires this for --control-plane-address):
//
//	eds := xds.NewEndpoints(registry)                 // discovery.Source: EDS, then the registry
//	sc, _ := proxy.New(opts, registry, eds, reg, log)
//	c, _ := xds.New(xds.Options{Address: addr, AppID: id, SPIFFEID: svid}, sc, eds, reg, log)
//	sc.SetControlPlane(c)                             // Run by the sidecar
package xds
