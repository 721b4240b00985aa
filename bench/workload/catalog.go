package workload

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// The catalog is the fixed vocabulary of a workload: services, their
// operations and every byte string that does not change from span to span,
// encoded once per Build. Spans are then assembled by concatenation.

// opClass is what an operation does; it picks the span kind, the attribute
// set and the error a failing span reports.
type opClass uint8

const (
	classServer   opClass = iota // HTTP SERVER span: a route of the service
	classClient                  // HTTP CLIENT span: a call to another service's route
	classDB                      // database CLIENT span, always a leaf
	classInternal                // INTERNAL span: in-process work
	numClasses
)

// OTLP Span.SpanKind values.
const (
	kindInternal = 1
	kindServer   = 2
	kindClient   = 3
)

// op is one operation: a span name with its fixed attributes.
type op struct {
	name     []byte // Span.name field: tag, length, value
	attrs    []byte // fixed Span.attributes fields, each with tag and length
	size     int    // encoded span size without parent ID, status code and error parts
	class    opClass
	kind     byte
	httpCode bool  // the span carries http.response.status_code
	reqID    bool  // the span carries the propagated x-request-id header
	success  uint8 // index into statusCodes of the usual answer
	client   uint16
}

// HTTP status codes a span may carry, by index.
var statusCodes = [...]int64{200, 201, 204, 400, 401, 404, 429, 500, 503}

const (
	code200 = iota
	code201
	code204
	code400
	code401
	code404
	code429
	code500
)

// clientErrorCodes are the 4xx answers of root spans (not errors in OTel's
// sense: the server did its job).
var clientErrorCodes = [...]uint8{code400, code401, code404, code429}

// routeTemplates are the routes every service serves, with their usual
// answer and their share of requests.
var routeTemplates = [...]struct {
	method, path string
	success      uint8
	weight       float64
}{
	{"GET", "/api/v1/%s/{id}", code200, 0.40},
	{"GET", "/api/v1/%s", code200, 0.25},
	{"POST", "/api/v1/%s", code201, 0.15},
	{"PUT", "/api/v1/%s/{id}", code200, 0.12},
	{"DELETE", "/api/v1/%s/{id}", code204, 0.08},
}

const numRoutes = len(routeTemplates)

// pickRoute maps u in [0,1) to a route index by weight.
func pickRoute(u float64) int {
	for i, r := range routeTemplates {
		if u < r.weight {
			return i
		}
		u -= r.weight
	}
	return 0
}

// serviceNames are the services of a typical shop; beyond 20 they repeat
// with a suffix. nouns are their REST resources.
var serviceNames = [...]struct{ name, noun string }{
	{"frontend", "pages"}, {"api-gateway", "sessions"}, {"checkout", "orders"}, {"cart", "carts"},
	{"payment", "payments"}, {"shipping", "shipments"}, {"inventory", "stock"}, {"catalog", "products"},
	{"accounts", "accounts"}, {"auth", "tokens"}, {"recommendation", "recommendations"}, {"ads", "ads"},
	{"email", "emails"}, {"currency", "rates"}, {"quote", "quotes"}, {"fraud-detection", "checks"},
	{"accounting", "ledger"}, {"search", "results"}, {"reviews", "reviews"}, {"notification", "notifications"},
}

// internalOps are each service's in-process operations.
var internalOps = [...]struct{ fn, file string }{
	{"Validate", "validate.go"},
	{"Render", "render.go"},
}

const (
	numUsers     = 10000 // enduser.id pool: user-000000 ...
	userIDPrefix = "user-"
	userIDDigits = 6
	hexIDLen     = 32 // x-request-id: the trace ID in hex
	scopeName    = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	scopeVersion = "0.72.0"
	schemaURL    = "https://opentelemetry.io/schemas/1.26.0"
	sdkVersion   = "1.47.0"
)

// errorParts are the pieces a failing span of one class adds.
type errorParts struct {
	attr   []byte // error.type attribute field
	event  []byte // "exception" Span.events field; its time is patched
	timeAt int    // offset of the event's 8-byte time_unix_nano in event
	status []byte // Span.status field with code ERROR and a message
	size   int
}

type catalog struct {
	ops      []op
	routes   [][numRoutes]uint16 // per service: the SERVER op of each route
	db       []uint16            // per service: its database CLIENT op
	internal [][len(internalOps)]uint16
	entries  int // services [0, entries) take the root spans

	resources [][]byte // per service: ResourceSpans.resource field
	schemaURL []byte   // ResourceSpans.schema_url field
	scope     []byte   // ScopeSpans.scope field
	codes     [len(statusCodes)][]byte
	users     []byte // enduser.id attribute fields, userSize bytes each
	userSize  int
	reqID     []byte                 // x-request-id attribute field; the last hexIDLen bytes are patched
	errs      [numClasses]errorParts // none for classClient: the server side of a call fails
}

// entryServices is how many services take root spans: a fifth of them
// (gateways and frontends), at least one.
func entryServices(services int) int { return max(1, (services+4)/5) }

func newCatalog(services int, rng *rand.Rand) *catalog {
	c := &catalog{entries: entryServices(services)}
	for i := range statusCodes {
		c.codes[i] = attrField(kv("http.response.status_code", anyInt(statusCodes[i])))
	}
	// One template, digits patched in: the pool is one allocation.
	tmpl := attrField(kv("enduser.id", anyString(userIDPrefix+strings.Repeat("0", userIDDigits))))
	c.userSize = len(tmpl)
	c.users = make([]byte, 0, numUsers*c.userSize)
	for u := range numUsers {
		c.users = append(c.users, tmpl...)
		for i, v := len(c.users)-1, u; i >= len(c.users)-userIDDigits; i, v = i-1, v/10 {
			c.users[i] = byte('0' + v%10)
		}
	}
	c.reqID = attrField(kv("http.request.header.x-request-id", anyArray(anyString(strings.Repeat("0", hexIDLen)))))
	c.scope = field(1, appendField(appendField(nil, 1, []byte(scopeName)), 2, []byte(scopeVersion)))
	c.schemaURL = field(3, []byte(schemaURL))
	c.errs = [numClasses]errorParts{
		classServer: newErrorParts("500", "internal server error: upstream dependency failed",
			"*net/url.Error", "context deadline exceeded"),
		classDB: newErrorParts("*pgconn.PgError", "ERROR: deadlock detected (SQLSTATE 40P01)",
			"*pgconn.PgError", "ERROR: deadlock detected (SQLSTATE 40P01)"),
		classInternal: newErrorParts("*fmt.wrapError", "reservation expired",
			"*fmt.wrapError", "validate order: inventory reservation expired"),
	}

	names := make([]string, services)
	nouns := make([]string, services)
	for s := range services {
		sn := serviceNames[s%len(serviceNames)]
		names[s], nouns[s] = sn.name, sn.noun
		if s >= len(serviceNames) {
			names[s] = fmt.Sprintf("%s-%d", sn.name, s/len(serviceNames)+1)
			nouns[s] = fmt.Sprintf("%s%d", sn.noun, s/len(serviceNames)+1)
		}
	}
	c.routes = make([][numRoutes]uint16, services)
	c.db = make([]uint16, services)
	c.internal = make([][len(internalOps)]uint16, services)
	for s := range services {
		c.resources = append(c.resources, resourceField(names[s], rng))
		entry := s < c.entries
		for r, rt := range routeTemplates {
			route := fmt.Sprintf(rt.path, nouns[s])
			c.routes[s][r] = c.addServer(names[s], rt.method, route, rt.success, entry)
		}
		c.db[s] = c.addDB(nouns[s], rng)
		for i, io := range internalOps {
			c.internal[s][i] = c.addInternal(names[s], nouns[s], io.fn, io.file, rng)
		}
	}
	return c
}

// user returns the enduser.id attribute field of user u.
func (c *catalog) user(u int32) []byte {
	i := int(u) * c.userSize
	return c.users[i : i+c.userSize]
}

func (c *catalog) add(o op) uint16 {
	o.size = 18 + 10 + len(o.name) + 2 + 9 + 9 + len(o.attrs) + c.userSize + 6 // IDs, name, kind, times, attributes, flags
	if o.reqID {
		o.size += len(c.reqID)
	}
	if o.httpCode {
		o.size += len(c.codes[0]) // every code encodes to the same length
	}
	if len(c.ops) >= 1<<16 {
		panic("BUG: workload catalog has more than 65536 operations")
	}
	c.ops = append(c.ops, o)
	return uint16(len(c.ops) - 1)
}

// addServer adds a route and the CLIENT operation calling it.
func (c *catalog) addServer(service, method, route string, success uint8, entry bool) uint16 {
	scheme, host, agent := "http", service+".shop.svc.cluster.local", "Go-http-client/1.1"
	if entry {
		scheme, host = "https", "shop.example.com"
		agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	}
	var attrs []byte
	attrs = append(attrs, attrField(kv("http.request.method", anyString(method)))...)
	attrs = append(attrs, attrField(kv("http.route", anyString(route)))...)
	attrs = append(attrs, attrField(kv("url.scheme", anyString(scheme)))...)
	attrs = append(attrs, attrField(kv("server.address", anyString(host)))...)
	attrs = append(attrs, attrField(kv("user_agent.original", anyString(agent)))...)
	server := op{name: field(5, []byte(method+" "+route)), attrs: attrs, class: classServer, kind: kindServer,
		httpCode: true, reqID: true, success: success}

	url := "http://" + service + ":8080" + strings.ReplaceAll(route, "{id}", "4711")
	attrs = nil
	attrs = append(attrs, attrField(kv("http.request.method", anyString(method)))...)
	attrs = append(attrs, attrField(kv("url.template", anyString(route)))...)
	attrs = append(attrs, attrField(kv("url.full", anyString(url)))...)
	attrs = append(attrs, attrField(kv("server.address", anyString(service)))...)
	attrs = append(attrs, attrField(kv("server.port", anyInt(8080)))...)
	attrs = append(attrs, attrField(kv("network.protocol.version", anyString("1.1")))...)
	server.client = c.add(op{name: field(5, []byte(method+" "+route)), attrs: attrs, class: classClient, kind: kindClient,
		httpCode: true, success: success})
	return c.add(server)
}

func (c *catalog) addDB(noun string, rng *rand.Rand) uint16 {
	db := strings.ReplaceAll(noun, "-", "_")
	var attrs []byte
	attrs = append(attrs, attrField(kv("db.system.name", anyString("postgresql")))...)
	attrs = append(attrs, attrField(kv("db.namespace", anyString(db)))...)
	attrs = append(attrs, attrField(kv("db.operation.name", anyString("SELECT")))...)
	attrs = append(attrs, attrField(kv("db.collection.name", anyString(db)))...)
	attrs = append(attrs, attrField(kv("db.query.text", anyString("SELECT id, status, total, updated_at FROM "+db+" WHERE id = $1")))...)
	attrs = append(attrs, attrField(kv("server.address", anyString(fmt.Sprintf("%s-db-%d.shop.internal", noun, rng.IntN(3)))))...)
	attrs = append(attrs, attrField(kv("server.port", anyInt(5432)))...)
	return c.add(op{name: field(5, []byte("SELECT "+db)), attrs: attrs, class: classDB, kind: kindClient})
}

func (c *catalog) addInternal(service, noun, fn, file string, rng *rand.Rand) uint16 {
	pkg := "github.com/acme/shop/" + service + "/internal/" + strings.ReplaceAll(noun, "-", "")
	var attrs []byte
	attrs = append(attrs, attrField(kv("code.function.name", anyString(pkg+"."+fn)))...)
	attrs = append(attrs, attrField(kv("code.file.path", anyString("/src/"+service+"/internal/"+file)))...)
	attrs = append(attrs, attrField(kv("code.line.number", anyInt(int64(20+rng.IntN(400)))))...)
	attrs = append(attrs, attrField(kv("code.column.number", anyInt(int64(2+rng.IntN(30)))))...)
	attrs = append(attrs, attrField(kv("app.cache.hit", anyBool(rng.IntN(2) == 0)))...)
	attrs = append(attrs, attrField(kv("app.items.count", anyInt(int64(1+rng.IntN(50)))))...)
	attrs = append(attrs, attrField(kv("app.tenant.id", anyString("acme-eu-1")))...)
	return c.add(op{name: field(5, []byte(noun+"."+fn)), attrs: attrs, class: classInternal, kind: kindInternal})
}

// resourceField encodes ResourceSpans.resource of one service instance.
func resourceField(service string, rng *rand.Rand) []byte {
	const alnum = "bcdfghjklmnpqrstvwxz2456789"
	suffix := make([]byte, 5)
	for i := range suffix {
		suffix[i] = alnum[rng.IntN(len(alnum))]
	}
	var res []byte
	for _, a := range [][2]string{
		{"service.name", service},
		{"service.namespace", "shop"},
		{"service.version", fmt.Sprintf("1.%d.%d", rng.IntN(20), rng.IntN(10))},
		{"service.instance.id", fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()>>16)},
		{"host.name", fmt.Sprintf("ip-10-0-%d-%d.ec2.internal", rng.IntN(256), 1+rng.IntN(254))},
		{"k8s.namespace.name", "shop"},
		{"k8s.pod.name", fmt.Sprintf("%s-%08x-%s", service, rng.Uint32(), suffix)},
		{"deployment.environment", "production"},
		{"telemetry.sdk.language", "go"},
		{"telemetry.sdk.name", "opentelemetry"},
		{"telemetry.sdk.version", sdkVersion},
	} {
		res = appendField(res, 1, kv(a[0], anyString(a[1])))
	}
	return field(1, res)
}

func newErrorParts(errType, message, excType, excMessage string) errorParts {
	var ev []byte
	ev = protowire.AppendTag(ev, 1, protowire.Fixed64Type)
	timeAt := len(ev)
	ev = protowire.AppendFixed64(ev, 0)
	ev = appendField(ev, 2, []byte("exception"))
	ev = appendField(ev, 3, kv("exception.type", anyString(excType)))
	ev = appendField(ev, 3, kv("exception.message", anyString(excMessage)))
	event := field(11, ev)
	timeAt += len(event) - len(ev)

	var st []byte
	st = appendField(st, 2, []byte(message))
	st = protowire.AppendTag(st, 3, protowire.VarintType)
	st = protowire.AppendVarint(st, 2) // STATUS_CODE_ERROR
	p := errorParts{
		attr:   attrField(kv("error.type", anyString(errType))),
		event:  event,
		timeAt: timeAt,
		status: field(15, st),
	}
	p.size = len(p.attr) + len(p.event) + len(p.status)
	return p
}

// Encoding helpers for the catalog (not the hot path).

func appendField(dst []byte, num protowire.Number, v []byte) []byte {
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendBytes(dst, v)
}

func field(num protowire.Number, v []byte) []byte { return appendField(nil, num, v) }

// attrField is a Span.attributes field holding the KeyValue kv.
func attrField(kv []byte) []byte { return field(9, kv) }

func kv(key string, value []byte) []byte {
	return appendField(appendField(nil, 1, []byte(key)), 2, value)
}

func anyString(s string) []byte { return field(1, []byte(s)) }

func anyBool(v bool) []byte {
	b := protowire.AppendTag(nil, 2, protowire.VarintType)
	return protowire.AppendVarint(b, protowire.EncodeBool(v))
}

func anyInt(v int64) []byte {
	b := protowire.AppendTag(nil, 3, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

func anyArray(values ...[]byte) []byte {
	var arr []byte
	for _, v := range values {
		arr = appendField(arr, 1, v)
	}
	return field(5, arr)
}
